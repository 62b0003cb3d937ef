//! Which content coding a client takes: `Accept-Encoding` read as RFC 9110 §12.5.3 says
//! (q-values, `q=0` refusals, `*`, `identity`), lenient with what it cannot read.

use serde::Deserialize;

/// A content coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Coding {
    /// `gzip` (RFC 1952).
    #[serde(rename = "gzip")]
    Gzip,
    /// `br`, brotli (RFC 7932).
    #[serde(rename = "br", alias = "brotli")]
    Brotli,
    /// `zstd`, Zstandard (RFC 8878).
    #[serde(rename = "zstd")]
    Zstd,
}

impl Coding {
    /// Its name in `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn of(token: &str) -> Option<Coding> {
        // RFC 9110 §8.4.1.3: a recipient SHOULD take `x-gzip` for `gzip`.
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case("br") {
            Some(Coding::Brotli)
        } else if token.eq_ignore_ascii_case("zstd") {
            Some(Coding::Zstd)
        } else {
            None
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A weight in thousandths: `q=0.5` is 500; 0 is "not acceptable".
type Weight = u16;

/// What a client's `Accept-Encoding` said of the codings that matter here; None: not listed.
#[derive(Debug, Default)]
struct Accepted {
    codings: [Option<Weight>; 3],
    identity: Option<Weight>,
    any: Option<Weight>,
}

/// The coding to answer with: among the codings in `preference` (the server's order, best
/// first), the one the client weighs highest; on a tie the server's order decides. None: send
/// the response as it is — no header, no acceptable coding, or the client weighs `identity`
/// above every coding it accepts. Members that do not parse are skipped, never an error.
pub fn choose<'a>(
    headers: impl Iterator<Item = &'a [u8]>,
    preference: &[Coding],
) -> Option<Coding> {
    let mut accepted = Accepted::default();
    let mut present = false;
    for value in headers {
        present = true;
        for member in value.split(|b| *b == b',') {
            if let Some((coding, weight)) = member_of(member) {
                accepted.note(coding, weight);
            }
        }
    }
    if !present {
        // RFC 9110 allows any coding then, but clients that send none are often tools that
        // would not decode one: answer as the backend did, as every common server does.
        return None;
    }
    let mut best: Option<(Coding, Weight)> = None;
    for &coding in preference {
        let weight = accepted.codings[coding.index()]
            .or(accepted.any)
            .unwrap_or(0);
        if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((coding, weight));
        }
    }
    let (coding, weight) = best?;
    // `identity` weighed above the best coding: the client would rather have it plain. Listed
    // at the same weight, or not listed, the server's choice (compressing) stands.
    match accepted.identity {
        Some(identity) if identity > weight => None,
        _ => Some(coding),
    }
}

impl Accepted {
    fn note(&mut self, token: &str, weight: Weight) {
        let slot = if let Some(coding) = Coding::of(token) {
            &mut self.codings[coding.index()]
        } else if token.eq_ignore_ascii_case("identity") {
            &mut self.identity
        } else if token == "*" {
            &mut self.any
        } else {
            return;
        };
        // Listed twice: the first one counts.
        slot.get_or_insert(weight);
    }
}

/// One member of the list: `coding *( OWS ";" OWS param )`, with the weight of its `q`
/// parameter (1 when absent). None when empty or malformed.
fn member_of(member: &[u8]) -> Option<(&str, Weight)> {
    let member = std::str::from_utf8(member).ok()?;
    let mut parts = member.split(';');
    let token = parts.next()?.trim_matches([' ', '\t']);
    if token.is_empty() || !token.bytes().all(is_tchar) {
        return None;
    }
    let mut weight = 1000;
    for param in parts {
        let param = param.trim_matches([' ', '\t']);
        let (name, value) = param.split_once('=')?;
        if name.trim_end_matches([' ', '\t']).eq_ignore_ascii_case("q") {
            weight = qvalue(value.trim_start_matches([' ', '\t']))?;
        }
    }
    Some((token, weight))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(text: &str) -> Option<Weight> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (text, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: Weight = 0;
    for (i, digit) in frac.bytes().enumerate() {
        thousandths += Weight::from(digit - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    const ORDER: [Coding; 3] = [Zstd, Brotli, Gzip];

    fn pick(header: &str) -> Option<Coding> {
        choose(std::iter::once(header.as_bytes()), &ORDER)
    }

    #[test]
    fn weights_decide_and_the_server_order_breaks_ties() {
        assert_eq!(pick("gzip"), Some(Gzip));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Zstd));
        assert_eq!(pick("gzip, br"), Some(Brotli));
        assert_eq!(pick("gzip;q=0, br"), Some(Brotli));
        assert_eq!(pick("gzip;q=1.0, br;q=0.9"), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.8, zstd;q=0.001"), Some(Gzip));
        assert_eq!(pick("GZIP ; Q=0.7 , x-gzip"), Some(Gzip));
        assert_eq!(pick("deflate"), None);
        assert_eq!(choose(std::iter::empty(), &ORDER), None);
        let order = [Gzip, Brotli];
        assert_eq!(
            choose(std::iter::once(&b"zstd, br, gzip"[..]), &order),
            Some(Gzip),
            "only the codings the route offers, in its order"
        );
        assert_eq!(
            choose([&b"zstd;q=0.2"[..], &b"br;q=0.4"[..]].into_iter(), &ORDER),
            Some(Brotli),
            "header lines are one list"
        );
    }

    #[test]
    fn identity_star_and_refusals() {
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("*"), Some(Zstd));
        assert_eq!(pick("*;q=0.5, zstd;q=0"), Some(Brotli));
        assert_eq!(
            pick("gzip;q=0.5, identity"),
            None,
            "identity weighed higher"
        );
        assert_eq!(pick("gzip, identity"), Some(Gzip), "a tie: compress");
        assert_eq!(pick("gzip, identity;q=0"), Some(Gzip));
        assert_eq!(pick("gzip;q=0"), None);
    }

    #[test]
    fn malformed_members_are_skipped_never_errors() {
        assert_eq!(pick(";;q=x,,gzip;q="), None);
        assert_eq!(pick(";;q=x,,gzip;q=, br"), Some(Brotli));
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=0.1234",
            "gzip;q=-1",
            "gzip;q",
            "gzip;q=.5",
            "gz ip",
            "gzip;q=0.5x",
            "\"gzip\"",
            "gzip;q=1.001",
        ] {
            assert_eq!(pick(bad), None, "{bad}");
        }
        assert_eq!(
            pick("gzip;level=9"),
            Some(Gzip),
            "unknown parameters are ignored"
        );
        assert_eq!(pick(",,, ,\t,"), None);
        assert_eq!(
            choose(std::iter::once(&b"\xff\xfe, br"[..]), &ORDER),
            Some(Brotli)
        );
        let long = "x,".repeat(10_000) + "gzip";
        assert_eq!(pick(&long), Some(Gzip));
    }

    #[test]
    fn qvalues_parse_in_thousandths() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0.999"), Some(999));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue(""), None);
    }
}
