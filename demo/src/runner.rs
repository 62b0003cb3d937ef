//! The demo's life: check the conf and the addresses, start DNS, the pods and headway, follow
//! the commands typed on stdin, and on `quit`, end of input, SIGINT, SIGTERM or SIGHUP stop
//! everything it started: headway first, then the pods, then DNS, every child reaped.
//!
//! Pods behave like those of a Deployment behind a headless service: a new pod joins DNS once
//! its `/healthz` answers (its readiness probe); a removed pod leaves DNS first and gets SIGTERM
//! only after headway's next DNS refresh, so no request is sent to a pod that is going away.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use headless_dns::{DnsServer, Zone};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::command::{self, Command};
use crate::conf::{connectable, DemoConf};
use crate::follow;
use crate::http;
use crate::options::Options;
use crate::preflight::{self, Transport, Wanted};
use crate::process::{describe, Process, SIGINT, SIGKILL, SIGTERM};
use crate::say;
use crate::services::{self, DemoService, MAX_REPLICAS, SERVICES};

/// TTL of the demo's DNS answers: CoreDNS's default for cluster names.
const DNS_TTL: u32 = 5;
/// A pod whose `/healthz` does not answer 200 within this is stopped.
const POD_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// headway's `/ready` must answer 200 within this (its first discovery and health checks).
const HEADWAY_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// After SIGTERM, how long a pod may take (hello-service lets open requests finish for up to 5 s).
const POD_STOP_GRACE: Duration = Duration::from_secs(6);
/// After SIGINT (pingora's fast shutdown), how long headway may take.
const HEADWAY_STOP_GRACE: Duration = Duration::from_secs(10);
/// How often children are checked for an exit and stopping pods moved on.
const TICK: Duration = Duration::from_millis(100);

/// Runs the demo to its end; the exit code is 0 unless something failed.
pub async fn run(options: Options) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => return fail(&format!("cannot handle signals: {e}")),
    };
    let (events, mut event_rx) = unbounded_channel();
    let mut demo = match Demo::prepare(&options, events) {
        Ok(demo) => demo,
        Err(e) => return fail(&e),
    };
    if let Err(e) = preflight::check(&demo.wanted_addresses()) {
        return fail(&e);
    }

    let started = tokio::select! {
        result = demo.start(&mut event_rx) => result.map_err(Stop::Failed),
        signal = signals.recv() => Err(Stop::Signal(signal)),
    };
    let stop = match started {
        Ok(()) => demo.serve(&mut event_rx, stdin_lines(), &mut signals).await,
        Err(stop) => stop,
    };
    match &stop {
        Stop::Quit => {}
        Stop::EndOfInput => say!("[demo] end of input: stopping"),
        Stop::Signal(signal) => say!("[demo] {signal}: stopping"),
        Stop::Failed(e) => eprintln!("headway-demo: {e}"),
    }
    demo.shutdown(&mut signals).await;
    match stop {
        Stop::Failed(_) => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("headway-demo: {message}");
    ExitCode::FAILURE
}

/// Why the demo ends.
enum Stop {
    Quit,
    EndOfInput,
    Signal(&'static str),
    Failed(String),
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// Lines typed on stdin; the channel closes at end of input. A thread of its own: a blocking
/// read must not hold up the runtime, nor its shutdown.
fn stdin_lines() -> UnboundedReceiver<String> {
    let (lines, receiver) = unbounded_channel();
    let reader = std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = reader {
        say!("[demo] cannot read stdin ({e}): stopping");
    }
    receiver
}

/// News from a pod's readiness probe.
enum Event {
    Ready { pid: u32 },
    NotReady { pid: u32, error: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running, `/healthz` not answered yet: not in DNS.
    Starting,
    /// In DNS.
    Ready,
    /// Out of DNS; SIGTERM at `signal_at`, SIGKILL `POD_STOP_GRACE` after it was sent.
    Terminating {
        signal_at: Instant,
        signalled_at: Option<Instant>,
    },
}

struct Pod {
    /// Its place in the service's address block.
    slot: usize,
    addr: SocketAddr,
    process: Process,
    phase: Phase,
}

impl Pod {
    fn ip(&self) -> Option<Ipv4Addr> {
        match self.addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }
    }
}

struct Service {
    spec: &'static DemoService,
    /// The cluster's DNS name, as headway asks for it.
    dns_name: String,
    port: u16,
    /// How long a removed pod keeps running out of DNS: until headway has surely re-resolved.
    drain: Duration,
    pods: Vec<Pod>,
}

struct Demo {
    conf: DemoConf,
    headway_bin: PathBuf,
    hello_bin: PathBuf,
    log_dir: PathBuf,
    pod_ip_base: Ipv4Addr,
    zone: Zone,
    dns: Option<DnsServer>,
    headway: Option<Process>,
    services: Vec<Service>,
    events: UnboundedSender<Event>,
    follower: Option<JoinHandle<()>>,
    /// Processes started so far, for the goodbye line.
    started: usize,
}

impl Demo {
    /// Finds the binaries, reads the conf; starts nothing.
    fn prepare(options: &Options, events: UnboundedSender<Event>) -> Result<Demo, String> {
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find my own executable: {e}"))?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default(),
        };
        let headway_bin = bin_dir.join("headway");
        let hello_bin = bin_dir.join("hello-service");
        let missing: Vec<String> = [&headway_bin, &hello_bin]
            .iter()
            .filter(|bin| !bin.is_file())
            .map(|bin| bin.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "cannot find {}: build the workspace's binaries first: \
                 `cargo build --workspace --bins` (scripts/demo.sh does it)",
                missing.join(" and ")
            ));
        }

        let conf = DemoConf::load(&options.conf)?;
        let mut services = Vec::new();
        let mut errors = Vec::new();
        for spec in &SERVICES {
            let Some(cluster) = conf.cluster(spec.name) else {
                errors.push(format!(
                    "no cluster named {} (the demo runs service1 and service2)",
                    spec.name
                ));
                continue;
            };
            let Some(dns_name) = cluster.dns_name.clone() else {
                errors.push(format!(
                    "cluster {}: its address is an IP literal, but the demo's pods are found by DNS \
                     (use {}.default.svc.cluster.local.)",
                    spec.name, spec.name
                ));
                continue;
            };
            services.push(Service {
                spec,
                dns_name,
                port: cluster.port,
                drain: cluster.dns_refresh_rate + Duration::from_secs(1),
                pods: Vec::new(),
            });
        }
        if !errors.is_empty() {
            return Err(format!("{}: {}", conf.path.display(), errors.join("; ")));
        }

        let log_dir = options
            .log_dir
            .clone()
            .unwrap_or_else(|| bin_dir.join("demo-logs"));
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| format!("cannot create the log directory {}: {e}", log_dir.display()))?;

        Ok(Demo {
            conf,
            headway_bin,
            hello_bin,
            log_dir,
            pod_ip_base: options.pod_ip_base,
            zone: Zone::new(),
            dns: None,
            headway: None,
            services,
            events,
            follower: None,
            started: 0,
        })
    }

    /// Every address the demo is about to listen on, for [`preflight::check`].
    fn wanted_addresses(&self) -> Vec<Wanted> {
        let conf = self.conf.path.display();
        let mut wanted = vec![Wanted {
            addr: self.conf.nameserver,
            transport: Transport::UdpAndTcp,
            what: format!("the demo's DNS server, gateway.resolver.nameservers in {conf}"),
        }];
        for addr in &self.conf.proxy {
            wanted.push(Wanted {
                addr: *addr,
                transport: Transport::Tcp,
                what: format!("headway's proxy listener, gateway.listen in {conf}"),
            });
        }
        wanted.push(Wanted {
            addr: self.conf.admin,
            transport: Transport::Tcp,
            what: format!("headway's admin listener, gateway.admin.listen in {conf}"),
        });
        for service in &self.services {
            for slot in 0..service.spec.initial_replicas {
                if let Some(ip) = services::pod_ip(self.pod_ip_base, service.spec, slot) {
                    wanted.push(Wanted {
                        addr: SocketAddr::new(ip.into(), service.port),
                        transport: Transport::Tcp,
                        what: format!("a pod of {}", service.spec.name),
                    });
                }
            }
        }
        wanted
    }

    /// DNS, then the pods (in DNS once ready), then headway, until its `/ready` answers 200.
    async fn start(&mut self, events: &mut UnboundedReceiver<Event>) -> Result<(), String> {
        self.zone.set_ttl(DNS_TTL);
        let dns = DnsServer::bind(self.conf.nameserver, self.zone.clone())
            .await
            .map_err(|e| format!("DNS server on {} (UDP+TCP): {e}", self.conf.nameserver))?;
        say!(
            "[dns] answering on {} (UDP+TCP), TTL {DNS_TTL}s, for {}",
            dns.addr(),
            self.services
                .iter()
                .map(|s| s.dns_name.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        );
        self.dns = Some(dns);

        for index in 0..self.services.len() {
            self.scale(index, self.services[index].spec.initial_replicas);
        }
        let deadline = Instant::now() + POD_READY_TIMEOUT + Duration::from_secs(1);
        while self.pods().any(|pod| pod.phase == Phase::Starting) {
            if Instant::now() >= deadline {
                return Err("pods not ready in time".to_owned());
            }
            tokio::select! {
                Some(event) = events.recv() => self.on_event(event),
                _ = tokio::time::sleep(TICK) => self.tick()?,
            }
        }
        let wanted: usize = self.services.iter().map(|s| s.spec.initial_replicas).sum();
        let ready = self.pods().filter(|pod| pod.phase == Phase::Ready).count();
        if ready < wanted {
            return Err(format!(
                "only {ready} of {wanted} pods started: see the messages above and the logs in {}",
                self.log_dir.display()
            ));
        }

        let conf_path = self.conf.path.display().to_string();
        let headway = Process::spawn(
            "headway".to_owned(),
            &self.headway_bin,
            &["-c", &conf_path],
            &[],
            self.log_dir.join("headway.log"),
        )
        .map_err(|e| format!("cannot start headway: {e}"))?;
        self.started += 1;
        say!(
            "[headway] started (pid {}): {} -c {conf_path}, log in {}",
            headway.pid(),
            self.headway_bin.display(),
            headway.log.display()
        );
        let headway = self.headway.insert(headway);

        let admin = connectable(self.conf.admin);
        let deadline = Instant::now() + HEADWAY_READY_TIMEOUT;
        loop {
            if let Some(status) = headway.exited() {
                return Err(format!(
                    "headway exited ({}) before it was ready; its log ends with:\n{}",
                    describe(status),
                    headway.log_tail(20)
                ));
            }
            if let Ok(response) = http::get(admin, "/ready", Duration::from_secs(1)).await {
                if response.status == 200 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "headway did not answer 200 on http://{admin}/ready within {}s; its log ends with:\n{}",
                    HEADWAY_READY_TIMEOUT.as_secs(),
                    headway.log_tail(20)
                ));
            }
            tokio::time::sleep(TICK).await;
        }
        self.print_welcome();
        self.follower = Some(tokio::spawn(follow::follow(admin)));
        Ok(())
    }

    /// Commands, readiness news and ticks, until something ends the demo.
    async fn serve(
        &mut self,
        events: &mut UnboundedReceiver<Event>,
        mut input: UnboundedReceiver<String>,
        signals: &mut Signals,
    ) -> Stop {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                line = input.recv() => {
                    let Some(line) = line else { return Stop::EndOfInput };
                    match command::parse(&line) {
                        Ok(Command::Quit) => return Stop::Quit,
                        Ok(command) => self.execute(command).await,
                        Err(e) => say!("{e}"),
                    }
                }
                Some(event) = events.recv() => self.on_event(event),
                _ = tick.tick() => {
                    if let Err(e) = self.tick() {
                        return Stop::Failed(e);
                    }
                }
                signal = signals.recv() => return Stop::Signal(signal),
            }
        }
    }

    async fn execute(&mut self, command: Command) {
        match command {
            Command::Scale { service, replicas } => {
                let index = services::find(&service)
                    .and_then(|spec| self.services.iter().position(|s| s.spec == spec));
                match index {
                    None => say!("no service {service:?}: service1 or service2"),
                    Some(_) if replicas > MAX_REPLICAS => {
                        say!("{service}: at most {MAX_REPLICAS} pods (its block of addresses)")
                    }
                    Some(index) => self.scale(index, replicas),
                }
            }
            Command::Status => self.print_status().await,
            Command::Logs(lines) => match &self.headway {
                Some(headway) => say!("{}", headway.log_tail(lines)),
                None => say!("headway is not running"),
            },
            Command::Help => say!("{}", command::HELP),
            Command::Quit | Command::Nothing => {}
        }
    }

    /// Starts or removes pods of `self.services[index]` until `replicas` are running or starting.
    fn scale(&mut self, index: usize, replicas: usize) {
        let now = Instant::now();
        let service = &mut self.services[index];
        let name = service.spec.name;
        let mut live: Vec<usize> = (0..service.pods.len())
            .filter(|&i| !matches!(service.pods[i].phase, Phase::Terminating { .. }))
            .collect();
        live.sort_by_key(|&i| service.pods[i].slot);
        if replicas == live.len() {
            say!("[pods] {name} has {replicas} pod(s) already");
            return;
        }
        if replicas < live.len() {
            // The newest addresses go first.
            for &i in live.iter().rev().take(live.len() - replicas) {
                let drain = service.drain;
                let pod = &mut service.pods[i];
                let pid = pod.process.pid();
                if pod.phase == Phase::Ready {
                    say!(
                        "[pods] {name} {} (pid {pid}) leaves DNS; SIGTERM in {:.1}s, once headway has refreshed DNS",
                        pod.addr,
                        drain.as_secs_f64()
                    );
                    pod.phase = Phase::Terminating {
                        signal_at: now + drain,
                        signalled_at: None,
                    };
                } else {
                    say!(
                        "[pods] {name} {} (pid {pid}) was not ready yet: SIGTERM now",
                        pod.addr
                    );
                    pod.phase = Phase::Terminating {
                        signal_at: now,
                        signalled_at: None,
                    };
                }
            }
            self.publish(index);
            return;
        }
        for _ in live.len()..replicas {
            let service = &self.services[index];
            let taken: HashSet<usize> = service.pods.iter().map(|pod| pod.slot).collect();
            let Some(slot) = (0..MAX_REPLICAS).find(|slot| !taken.contains(slot)) else {
                say!("[pods] {name}: every address of its block is taken (pods still stopping?): try again in a moment");
                return;
            };
            if let Err(e) = self.start_pod(index, slot) {
                say!("[pods] {name}: {e}");
                return;
            }
        }
    }

    fn start_pod(&mut self, index: usize, slot: usize) -> Result<(), String> {
        let service = &self.services[index];
        let spec = service.spec;
        let ip = services::pod_ip(self.pod_ip_base, spec, slot)
            .ok_or_else(|| format!("no address for pod {slot}: the pod IP base is too high"))?;
        let addr = SocketAddr::new(ip.into(), service.port);
        let process = Process::spawn(
            format!("{} {addr}", spec.name),
            &self.hello_bin,
            &[],
            &[
                ("SERVICE_NAME", spec.service_name.to_owned()),
                ("LISTEN_ADDR", addr.to_string()),
            ],
            self.log_dir.join(format!("{}-{ip}.log", spec.name)),
        )
        .map_err(|e| format!("cannot start a pod on {addr}: {e}"))?;
        self.started += 1;
        let pid = process.pid();
        say!(
            "[pods] {} {addr} started (pid {pid}); joins DNS once /healthz answers",
            spec.name
        );
        self.services[index].pods.push(Pod {
            slot,
            addr,
            process,
            phase: Phase::Starting,
        });
        tokio::spawn(probe_readiness(addr, pid, self.events.clone()));
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        let (pid, error) = match event {
            Event::Ready { pid } => (pid, None),
            Event::NotReady { pid, error } => (pid, Some(error)),
        };
        let found = self
            .services
            .iter()
            .enumerate()
            .find_map(|(index, service)| {
                service
                    .pods
                    .iter()
                    .position(|pod| pod.process.pid() == pid && pod.phase == Phase::Starting)
                    .map(|position| (index, position))
            });
        // Gone, or scaled away while starting: the news is stale.
        let Some((index, position)) = found else {
            return;
        };
        let name = self.services[index].spec.name;
        let pod = &mut self.services[index].pods[position];
        match error {
            None => {
                pod.phase = Phase::Ready;
                say!("[pods] {name} {} (pid {pid}) is ready", pod.addr);
                self.publish(index);
            }
            Some(error) => {
                say!(
                    "[pods] {name} {} (pid {pid}) not ready after {}s ({error}): stopping it",
                    pod.addr,
                    POD_READY_TIMEOUT.as_secs()
                );
                pod.phase = Phase::Terminating {
                    signal_at: Instant::now(),
                    signalled_at: None,
                };
            }
        }
    }

    /// Sets the service's DNS name to its ready pods, as the endpoints controller and cluster DNS
    /// do: one A record each, NXDOMAIN when there is none.
    fn publish(&self, index: usize) {
        let service = &self.services[index];
        let mut ready: Vec<&Pod> = service
            .pods
            .iter()
            .filter(|pod| pod.phase == Phase::Ready)
            .collect();
        ready.sort_by_key(|pod| pod.slot);
        let ips: Vec<Ipv4Addr> = ready.iter().filter_map(|pod| pod.ip()).collect();
        let before = self
            .zone
            .records(&service.dns_name)
            .map(|records| records.a)
            .unwrap_or_default();
        if before == ips {
            return;
        }
        self.zone
            .set_headless_service(&service.dns_name, ips.iter().copied());
        say!("[dns] {} -> {}", service.dns_name, dns_answer(&ips));
    }

    /// Reaps exited children, moves stopping pods on. Err when headway is gone.
    fn tick(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for index in 0..self.services.len() {
            let name = self.services[index].spec.name;
            let mut lost_a_ready_pod = false;
            let pods = &mut self.services[index].pods;
            let mut i = 0;
            while i < pods.len() {
                let pod = &mut pods[i];
                let pid = pod.process.pid();
                if let Some(status) = pod.process.exited() {
                    let how = describe(status);
                    match pod.phase {
                        Phase::Terminating { .. } => {
                            say!("[pods] {name} {} (pid {pid}) stopped ({how})", pod.addr)
                        }
                        Phase::Starting => say!(
                            "[pods] {name} {} (pid {pid}) exited before it was ready ({how}); its log ends with:\n{}",
                            pod.addr,
                            pod.process.log_tail(5)
                        ),
                        Phase::Ready => {
                            say!(
                                "[pods] {name} {} (pid {pid}) exited ({how}): it leaves DNS; `scale {name} <n>` to replace it",
                                pod.addr
                            );
                            lost_a_ready_pod = true;
                        }
                    }
                    pods.remove(i);
                    continue;
                }
                if let Phase::Terminating {
                    signal_at,
                    signalled_at,
                } = &mut pod.phase
                {
                    match signalled_at {
                        None if now >= *signal_at => {
                            pod.process.signal(SIGTERM);
                            *signalled_at = Some(now);
                        }
                        Some(at) if now >= *at + POD_STOP_GRACE => pod.process.signal(SIGKILL),
                        _ => {}
                    }
                }
                i += 1;
            }
            if lost_a_ready_pod {
                self.publish(index);
            }
        }
        if let Some(headway) = &mut self.headway {
            if let Some(status) = headway.exited() {
                return Err(format!(
                    "headway exited unexpectedly ({}); its log ends with:\n{}",
                    describe(status),
                    headway.log_tail(20)
                ));
            }
        }
        Ok(())
    }

    fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.services.iter().flat_map(|service| service.pods.iter())
    }

    fn print_welcome(&self) {
        let proxy = self.conf.proxy.first().copied().map(connectable);
        let admin = connectable(self.conf.admin);
        say!("");
        say!("headway-demo: ready");
        say!(
            "  DNS      {} (UDP+TCP), answering as cluster DNS for headless services, TTL {DNS_TTL}s:",
            self.conf.nameserver
        );
        for service in &self.services {
            let ips: Vec<Ipv4Addr> = service.pods.iter().filter_map(Pod::ip).collect();
            say!("             {} -> {}", service.dns_name, dns_answer(&ips));
        }
        say!(
            "  pods     hello-service, one process per pod, logs in {}",
            self.log_dir.display()
        );
        if let Some(headway) = &self.headway {
            say!(
                "  headway  pid {}, proxy on {}, log {}",
                headway.pid(),
                self.conf
                    .proxy
                    .iter()
                    .map(|a| format!("http://{a}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                headway.log.display()
            );
            say!(
                "  dashboard http://{0}/   (open it in a browser: routes, clusters and pods, live)",
                self.conf.admin
            );
            say!(
                "  admin    http://{0}/ready  http://{0}/clusters  http://{0}/stats  http://{0}/metrics",
                self.conf.admin
            );
        }
        if let Some(proxy) = proxy {
            let proxy = curl_host(proxy);
            say!("");
            say!("Try it from another shell:");
            say!("  curl {proxy}/service/1       # a few times: round robin over service1's pods");
            say!("  curl {proxy}/service/2");
            say!("  curl {proxy}/nowhere         # headway's own 404");
        }
        let admin = curl_host(admin);
        say!("  curl {admin}/clusters        # what headway found in DNS, and each pod's health");
        say!("  curl {admin}/metrics         # Prometheus metrics");
        say!("  curl {admin}/ready");
        say!("");
        say!("Type here: scale service1 5 | scale service2 0 | status | logs | help | quit");
        say!("(Ctrl-C or Ctrl-D stops everything too.) Lines marked [headway] show what headway sees.");
        say!("");
    }

    async fn print_status(&self) {
        say!(
            "[status] DNS on {} (UDP+TCP), TTL {}s: {} queries so far, {} over TCP",
            self.conf.nameserver,
            self.zone.ttl(),
            self.zone.queries(),
            self.zone.tcp_queries()
        );
        if let Some(headway) = &self.headway {
            say!(
                "[status] headway pid {}: proxy {}, admin {}",
                headway.pid(),
                self.conf
                    .proxy
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                self.conf.admin
            );
        }
        for service in &self.services {
            let ips = self
                .zone
                .records(&service.dns_name)
                .map(|records| records.a)
                .unwrap_or_default();
            say!("[status] {} -> {}", service.dns_name, dns_answer(&ips));
            let mut pods: Vec<&Pod> = service.pods.iter().collect();
            pods.sort_by_key(|pod| pod.slot);
            for pod in pods {
                let phase = match pod.phase {
                    Phase::Starting => "starting (not in DNS yet)",
                    Phase::Ready => "ready (in DNS)",
                    Phase::Terminating { .. } => "stopping (out of DNS)",
                };
                say!(
                    "[status]   {} {} pid {} {phase}",
                    service.spec.name,
                    pod.addr,
                    pod.process.pid()
                );
            }
        }
        match follow::clusters(connectable(self.conf.admin)).await {
            Ok(json) => {
                for (_, line) in follow::summarize(&json) {
                    say!("[status] headway sees {line}");
                }
            }
            Err(e) => say!("[status] headway's /clusters: {e}"),
        }
    }

    /// Stops everything it started, headway first (so no request is in flight to a pod), then
    /// the pods, then DNS; every child is reaped. A second signal meanwhile: SIGKILL at once.
    async fn shutdown(&mut self, signals: &mut Signals) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        let mut hurry = false;
        if let Some(mut headway) = self.headway.take() {
            let pid = headway.pid();
            // SIGINT is pingora's fast shutdown: no grace period to sit through in a demo.
            let stopped = tokio::select! {
                status = headway.stop(SIGINT, HEADWAY_STOP_GRACE) => Some(status),
                signal = signals.recv() => {
                    say!("[demo] {signal} again: killing everything");
                    None
                }
            };
            let status = match stopped {
                Some(status) => status,
                None => {
                    hurry = true;
                    headway.kill()
                }
            };
            say!("[headway] stopped (pid {pid}, {})", describe(status));
        }

        let mut pods: Vec<(&'static str, Pod)> = Vec::new();
        for service in &mut self.services {
            let name = service.spec.name;
            pods.extend(service.pods.drain(..).map(|pod| (name, pod)));
        }
        for (_, pod) in &mut pods {
            pod.process.signal(if hurry { SIGKILL } else { SIGTERM });
        }
        let deadline = Instant::now() + POD_STOP_GRACE;
        while !hurry
            && pods
                .iter_mut()
                .any(|(_, pod)| pod.process.exited().is_none())
        {
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                signal = signals.recv() => {
                    say!("[demo] {signal} again: killing the pods");
                    hurry = true;
                }
            }
        }
        for (name, pod) in &mut pods {
            // Reaps it; SIGKILL first if it is still running.
            let status = pod.process.kill();
            say!(
                "[pods] {name} {} (pid {}) stopped ({})",
                pod.addr,
                pod.process.pid(),
                describe(status)
            );
        }

        for service in &self.services {
            self.zone.remove(&service.dns_name);
        }
        if let Some(dns) = self.dns.take() {
            dns.stop().await;
            say!("[dns] stopped");
        }
        say!(
            "[demo] stopped: all {} processes it started have exited",
            self.started
        );
    }
}

/// Polls the pod's `/healthz`, as a readiness probe, and tells the demo.
async fn probe_readiness(addr: SocketAddr, pid: u32, events: UnboundedSender<Event>) {
    let deadline = Instant::now() + POD_READY_TIMEOUT;
    loop {
        let error = match http::get(addr, "/healthz", Duration::from_secs(1)).await {
            Ok(response) if response.status == 200 => {
                let _ = events.send(Event::Ready { pid });
                return;
            }
            Ok(response) => format!("/healthz answered {}", response.status),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            let _ = events.send(Event::NotReady { pid, error });
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `127.0.0.11 127.0.0.12`, or `NXDOMAIN (no ready pod)`.
fn dns_answer(ips: &[Ipv4Addr]) -> String {
    if ips.is_empty() {
        "NXDOMAIN (no ready pod)".to_owned()
    } else {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What to type after `curl`: `localhost:8000` for loopback, else the address.
fn curl_host(addr: SocketAddr) -> String {
    if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
