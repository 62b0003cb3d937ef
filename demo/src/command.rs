//! The commands typed on the demo's stdin, one a line.

pub const HELP: &str = "\
commands:
  scale <service> <n>   run n pods of service1 or service2 (0 to 10); new pods join DNS once
                        their /healthz answers, removed ones leave DNS first and get SIGTERM
                        after headway's next DNS refresh, like pods going away
  status                pods, their pids, DNS records, and what headway sees
  logs [n]              the last n lines (default 20) of headway's log
  help                  this
  quit                  stop everything (so do Ctrl-C, Ctrl-D and SIGTERM)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Scale {
        service: String,
        replicas: usize,
    },
    Status,
    Logs(usize),
    Help,
    Quit,
    /// A blank line.
    Nothing,
}

pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(Command::Nothing),
        ["scale", service, count] => match count.parse() {
            Ok(replicas) => Ok(Command::Scale {
                service: (*service).to_owned(),
                replicas,
            }),
            Err(_) => Err(format!(
                "scale {service} {count}: {count} is not a number of pods"
            )),
        },
        ["scale", ..] => Err("usage: scale <service> <n>, e.g. scale service1 5".to_owned()),
        ["status"] => Ok(Command::Status),
        ["logs"] => Ok(Command::Logs(20)),
        ["logs", count] => count
            .parse()
            .map(Command::Logs)
            .map_err(|_| format!("logs {count}: {count} is not a number of lines")),
        ["help"] | ["?"] => Ok(Command::Help),
        ["quit"] | ["exit"] | ["q"] => Ok(Command::Quit),
        [other, ..] => Err(format!("unknown command {other:?}: type `help`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse(" scale  service1 5 "),
            Ok(Command::Scale {
                service: "service1".into(),
                replicas: 5
            })
        );
        assert_eq!(parse("status"), Ok(Command::Status));
        assert_eq!(parse("logs"), Ok(Command::Logs(20)));
        assert_eq!(parse("logs 3"), Ok(Command::Logs(3)));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("exit"), Ok(Command::Quit));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse(""), Ok(Command::Nothing));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse("scale service1 -1").unwrap_err().contains("-1"));
        assert!(parse("scale service1").unwrap_err().contains("usage"));
        assert!(parse("dance").unwrap_err().contains("help"));
    }
}
