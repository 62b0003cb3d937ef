//! The Kubernetes manifests in k8s/, checked where no cluster can run: `kubectl kustomize`
//! renders them; the result, and each file that `kubectl apply -f <folder>` sends, validates
//! against the schemas of Kubernetes 1.29 and of the newest release `kubernetes-validate` knows,
//! in strict mode; the gateway conf in the rendered ConfigMap passes `headway -t` and agrees with
//! the Services, Deployments and ports it names; and headway, run on that very conf with a pod's
//! view of DNS, follows two headless services as cluster DNS publishes them.
//!
//! Needs `kubectl` and `kubernetes-validate` (PyPI), which `scripts/setup.sh` installs. Where one
//! is missing the test is skipped (`support::skip`), unless `CI` is set: then it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::backend::Backend;
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, run_headway, wait_until};

/// The oldest Kubernetes the manifests must apply to (the issue: "a current cluster, 1.29+").
const OLDEST_KUBERNETES: &str = "1.29.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn k8s_dir() -> PathBuf {
    repo().join("k8s")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The first of `candidates` (a program and its first arguments) that runs `probe` successfully,
/// as a command line. When none does: fails under CI (whose scripts/setup.sh installs the tool),
/// else marks the test skipped (`support::skip`) and returns None so that the test can return.
fn tool(candidates: &[&[&str]], probe: &[&str], install: &str) -> Option<Vec<String>> {
    for candidate in candidates {
        let runs = Command::new(candidate[0])
            .args(&candidate[1..])
            .args(probe)
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            return Some(candidate.iter().map(|s| s.to_string()).collect());
        }
    }
    let name = candidates[0][0];
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("`{name}` is missing, and CI is set: scripts/setup.sh must install it ({install})");
    }
    support::skip(
        "a k8s/ test",
        &format!("`{name}` is not installed here (install it with: {install})"),
    );
    None
}

fn have_kubectl() -> bool {
    tool(
        &[&["kubectl"]],
        &["version", "--client"],
        "apt-get install kubectl, or Debian's kubernetes-client",
    )
    .is_some()
}

/// `kubernetes-validate`, or the same module through python3 when pip put the script off PATH.
fn kubernetes_validate() -> Option<Vec<String>> {
    tool(
        &[
            &["kubernetes-validate"],
            &["python3", "-m", "kubernetes_validate"],
        ],
        &["--version"],
        "scripts/setup.sh installs it, pinned in scripts/python-peers.txt",
    )
}

fn parse_yaml_stream(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: not YAML: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value:?}"))
}

fn seq<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, found {value:?}"))
}

/// A conf duration (`250ms`, `5s`, `1m`) in seconds.
fn seconds(value: &Value, what: &str) -> f64 {
    let text = str_of(value, what);
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        panic!("{what}: `{text}` is not a duration this test reads")
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|e| panic!("{what}: `{text}`: {e}"))
        * scale
}

/// The port of an `ip:port` listen address.
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{listen}` is not ip:port"))
}

/// `kubectl kustomize k8s/`, parsed: what `kubectl apply -k k8s/` would send.
struct Rendered {
    text: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn render() -> Rendered {
        Rendered::render_dir(&k8s_dir())
    }

    /// k8s/ with the component `k8s/components/<name>` turned on, as a kustomization of a
    /// user's own would (kustomize refuses one inside k8s/ itself: a cycle).
    fn render_with_component(name: &str, dir: &Path) -> Rendered {
        std::os::unix::fs::symlink(k8s_dir(), dir.join("k8s")).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!("resources: [k8s]\ncomponents: [k8s/components/{name}]\n"),
        )
        .unwrap();
        Rendered::render_dir(dir)
    }

    fn render_dir(dir: &Path) -> Rendered {
        let out = run(Command::new("kubectl").arg("kustomize").arg(dir));
        assert!(
            out.status.success(),
            "kubectl kustomize {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let objects = parse_yaml_stream(&text, "kubectl kustomize k8s/");
        Rendered { text, objects }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    fn get<'a>(&'a self, kind: &'a str, name: &str) -> &'a Value {
        self.of_kind(kind)
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("k8s/ renders no {kind} named `{name}`"))
    }

    /// The one Namespace object; every other object must be in it.
    fn namespace(&self) -> String {
        let namespaces: Vec<&Value> = self.of_kind("Namespace").collect();
        assert_eq!(namespaces.len(), 1, "k8s/ must render one Namespace");
        str_of(&namespaces[0]["metadata"]["name"], "Namespace name").to_owned()
    }

    /// The generated ConfigMap holding the gateway conf: (its name, the conf's text).
    fn gateway_conf(&self) -> (String, String) {
        let maps: Vec<&Value> = self
            .of_kind("ConfigMap")
            .filter(|m| !m["data"]["headway.yaml"].is_null())
            .collect();
        assert_eq!(
            maps.len(),
            1,
            "k8s/ must render one ConfigMap with key headway.yaml"
        );
        (
            str_of(&maps[0]["metadata"]["name"], "ConfigMap name").to_owned(),
            str_of(&maps[0]["data"]["headway.yaml"], "ConfigMap data").to_owned(),
        )
    }

    /// The one Deployment that mounts ConfigMap `configmap`: the gateway.
    fn mounting(&self, configmap: &str) -> &Value {
        let mounting: Vec<&Value> = self
            .of_kind("Deployment")
            .filter(|d| {
                d["spec"]["template"]["spec"]["volumes"]
                    .as_sequence()
                    .is_some_and(|volumes| {
                        volumes.iter().any(|v| v["configMap"]["name"] == configmap)
                    })
            })
            .collect();
        assert_eq!(
            mounting.len(),
            1,
            "one Deployment must mount ConfigMap {configmap}"
        );
        mounting[0]
    }

    /// The Deployment whose pods carry every label of `selector`.
    fn deployment_selected_by(&self, selector: &Value, what: &str) -> &Value {
        let selected: Vec<&Value> = self
            .of_kind("Deployment")
            .filter(|d| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{what}: its selector {selector:?} must select the pods of exactly one Deployment"
        );
        selected[0]
    }
}

/// Whether a label selector (`{k: v}` or `{matchLabels: {k: v}}`) matches `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let pairs = if selector["matchLabels"].is_mapping() {
        &selector["matchLabels"]
    } else {
        selector
    };
    pairs
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn only_container(deployment: &Value) -> &Value {
    let name = &deployment["metadata"]["name"];
    let containers = seq(
        &deployment["spec"]["template"]["spec"]["containers"],
        "containers",
    );
    assert_eq!(containers.len(), 1, "Deployment {name:?}: one container");
    &containers[0]
}

/// The container port that `port` (a number or a port name) designates.
fn container_port(port: &Value, container: &Value, what: &str) -> u16 {
    let ports = seq(&container["ports"], "container ports");
    let found = if port.is_string() {
        ports.iter().find(|p| p["name"] == *port)
    } else {
        ports.iter().find(|p| p["containerPort"] == *port)
    };
    let found =
        found.unwrap_or_else(|| panic!("{what}: port {port:?} is not a port of the container"));
    found["containerPort"].as_u64().unwrap() as u16
}

/// The container port a Service port's `targetPort` lands on.
fn target_port(service_port: &Value, container: &Value, what: &str) -> u16 {
    container_port(&service_port["targetPort"], container, what)
}

/// The files `kubectl apply -f <folder>` sends for the seed-style steps (never recursing).
fn per_folder_files() -> Vec<PathBuf> {
    let mut files = vec![k8s_dir().join("namespace.yaml")];
    for folder in ["service1", "service2", "gateway"] {
        let mut in_folder: Vec<PathBuf> = std::fs::read_dir(k8s_dir().join(folder))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        in_folder.sort();
        files.extend(in_folder);
    }
    files
}

/// Runs `kubernetes-validate --strict` on `files` for one Kubernetes version (None: the newest
/// it knows). A schema it cannot find (a kind or an API version that Kubernetes no longer
/// serves, as in the seed) is only a warning to it, with exit code 0: here it is a failure.
fn validate(validator: &[String], files: &[PathBuf], version: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(&validator[0]);
    cmd.args(&validator[1..]).args(["--strict", "--quiet"]);
    if let Some(version) = version {
        cmd.args(["-k", version]);
    }
    let out = run(cmd.args(files));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("exit {:?}:\n{report}", out.status.code()))
    }
}

#[test]
fn the_manifests_render_and_validate_strictly_against_current_kubernetes() {
    if !have_kubectl() {
        return;
    }
    let Some(validator) = kubernetes_validate() else {
        return;
    };
    let rendered = Rendered::render();
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("rendered.yaml");
    std::fs::write(&all, &rendered.text).unwrap();

    // The check bites: a misspelt field, and an API version Kubernetes no longer serves.
    let misspelt = dir.path().join("misspelt.yaml");
    std::fs::write(
        &misspelt,
        "apiVersion: v1\nkind: Service\nmetadata: { name: x }\nspec: { clusterIp: None }\n",
    )
    .unwrap();
    let removed = dir.path().join("removed.yaml");
    std::fs::write(
        &removed,
        "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: { name: x }\nspec: {}\n",
    )
    .unwrap();
    for control in [&misspelt, &removed] {
        assert!(
            validate(
                &validator,
                std::slice::from_ref(control),
                Some(OLDEST_KUBERNETES)
            )
            .is_err(),
            "kubernetes-validate accepted {}: the check would prove nothing",
            control.display()
        );
    }

    // What `kubectl apply -k k8s/` sends, and each file of the per-folder steps.
    let mut files = vec![all];
    files.extend(per_folder_files());
    for version in [Some(OLDEST_KUBERNETES), None] {
        if let Err(report) = validate(&validator, &files, version) {
            panic!(
                "k8s/ does not validate against Kubernetes {}: {report}",
                version.unwrap_or("(newest)")
            );
        }
    }
}

#[test]
fn the_folders_and_the_kustomization_deploy_the_same_objects_in_one_namespace() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    let namespace = rendered.namespace();
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(kustomization["namespace"], namespace.as_str());

    // Every folder file is listed in the kustomization and the other way round, so that neither
    // way of deploying forgets an object the other sends.
    let listed: BTreeSet<PathBuf> = seq(&kustomization["resources"], "resources")
        .iter()
        .map(|r| k8s_dir().join(str_of(r, "resources[]")))
        .collect();
    let files = per_folder_files();
    assert_eq!(
        listed,
        files.iter().cloned().collect::<BTreeSet<_>>(),
        "k8s/kustomization.yaml `resources:` must list exactly the files of k8s/ and its folders"
    );

    // `kubectl apply -f` has no `namespace:` to apply: each file names it itself.
    let mut from_files = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for object in parse_yaml_stream(&text, &file.display().to_string()) {
            let kind = str_of(&object["kind"], "kind").to_owned();
            if kind != "Namespace" {
                assert_eq!(
                    object["metadata"]["namespace"],
                    namespace.as_str(),
                    "{}: {kind} must name namespace {namespace}",
                    file.display()
                );
            }
            from_files.insert((kind, str_of(&object["metadata"]["name"], "name").to_owned()));
        }
    }
    // kustomize adds only the generated ConfigMap, which the per-folder steps create by hand.
    let (configmap, _) = rendered.gateway_conf();
    let mut from_kustomize = BTreeSet::new();
    for object in &rendered.objects {
        let kind = str_of(&object["kind"], "kind").to_owned();
        let name = str_of(&object["metadata"]["name"], "name").to_owned();
        if kind != "Namespace" {
            assert_eq!(
                object["metadata"]["namespace"],
                namespace.as_str(),
                "{kind} {name}"
            );
        }
        if name != configmap {
            from_kustomize.insert((kind, name));
        }
    }
    assert_eq!(from_files, from_kustomize);

    // One place to point the images at a registry: every image is rewritten by an `images:` entry.
    let wanted: BTreeSet<String> = seq(&kustomization["images"], "images")
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                str_of(&i["newName"], "images[].newName"),
                str_of(&i["newTag"], "images[].newTag")
            )
        })
        .collect();
    let used: BTreeSet<String> = rendered
        .of_kind("Deployment")
        .map(|d| str_of(&only_container(d)["image"], "image").to_owned())
        .collect();
    assert_eq!(
        used, wanted,
        "the images: of k8s/kustomization.yaml must rewrite every image"
    );
}

#[test]
fn the_gateway_conf_passes_dash_t_and_names_the_headless_services() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    let namespace = rendered.namespace();
    let (_, conf_text) = rendered.gateway_conf();
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("headway.yaml");
    std::fs::write(&conf_path, &conf_text).unwrap();
    let (code, stdout, stderr) = run_headway(&["-t", "-c", &conf_path.to_string_lossy()]);
    assert_eq!(
        code, 0,
        "the rendered ConfigMap's conf fails headway -t:\n{stdout}{stderr}"
    );
    let conf: Value = serde_yaml::from_str(&conf_text).unwrap();
    let gateway = &conf["gateway"];

    // Routes and clusters: the seed's two prefixes, each to its own headless Service.
    let routes: Vec<(&str, &str)> = seq(&gateway["routes"], "routes")
        .iter()
        .map(|r| {
            (
                str_of(&r["prefix"], "prefix"),
                str_of(&r["cluster"], "cluster"),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [("/service/1", "service1"), ("/service/2", "service2")]
    );
    let mut cluster_names = BTreeSet::new();
    for cluster in seq(&gateway["clusters"], "clusters") {
        let name = str_of(&cluster["name"], "clusters[].name");
        let what = format!("cluster {name}");
        cluster_names.insert(name.to_owned());
        let service = rendered.get("Service", name);
        assert_eq!(
            service["spec"]["clusterIP"], "None",
            "Service {name} must be headless"
        );
        // The Service's named port as cluster DNS publishes it: SRV records carry the pods' port.
        let address = str_of(&cluster["address"], "address");
        let suffix = format!("._tcp.{name}.{namespace}.svc.cluster.local.");
        let port_name = address
            .strip_prefix('_')
            .and_then(|a| a.strip_suffix(&suffix))
            .unwrap_or_else(|| {
                panic!("{what}: the address must be _<port name>{suffix} (Service {name}'s named port, final dot included), not {address}")
            });
        assert_eq!(
            cluster["discovery"], "srv",
            "{what}: an SRV name needs discovery: srv"
        );
        assert!(
            cluster["port"].is_null(),
            "{what}: the port comes from the SRV records"
        );
        let service_port = seq(&service["spec"]["ports"], "ports")
            .iter()
            .find(|p| p["name"] == port_name)
            .unwrap_or_else(|| panic!("{what}: Service {name} has no port named {port_name}"));
        let deployment = rendered.deployment_selected_by(&service["spec"]["selector"], &what);
        let container = only_container(deployment);
        // The SRV records carry the port the Service's targetPort lands on in the pods.
        target_port(service_port, container, &what);
        // The kubelet (which decides what DNS lists) and the gateway probe the same thing.
        assert_eq!(
            cluster["health_check"]["path"], container["readinessProbe"]["httpGet"]["path"],
            "{what}: the gateway's health check and the pods' readiness probe must agree"
        );
    }
    let headless: BTreeSet<String> = rendered
        .of_kind("Service")
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .map(|s| str_of(&s["metadata"]["name"], "name").to_owned())
        .collect();
    assert_eq!(
        headless, cluster_names,
        "every headless Service is a cluster of the gateway"
    );
}

#[test]
fn the_gateway_deployment_runs_that_conf_from_the_configmap_and_drains_in_time() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    let (configmap, conf_text) = rendered.gateway_conf();
    let conf: Value = serde_yaml::from_str(&conf_text).unwrap();
    let gateway = &conf["gateway"];
    let deployment = rendered.mounting(&configmap);
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let container = only_container(deployment);
    let volumes: HashMap<&str, &Value> = seq(&pod["volumes"], "volumes")
        .iter()
        .map(|v| (str_of(&v["name"], "volume name"), v))
        .collect();
    let mounts: Vec<(&str, &Value)> = seq(&container["volumeMounts"], "volumeMounts")
        .iter()
        .map(|m| {
            (
                str_of(&m["mountPath"], "mountPath"),
                volumes[str_of(&m["name"], "mount name")],
            )
        })
        .collect();
    let args: Vec<&str> = seq(&container["args"], "args")
        .iter()
        .map(|a| str_of(a, "args[]"))
        .collect();
    assert_eq!(args.len(), 2, "gateway args: -c <conf>");
    assert_eq!(args[0], "-c");
    let conf_file = Path::new(args[1]);
    let (mount_path, volume) = mounts
        .iter()
        .find(|(path, _)| conf_file.parent() == Some(Path::new(path)))
        .unwrap_or_else(|| panic!("nothing is mounted where {} lives", conf_file.display()));
    assert_eq!(
        volume["configMap"]["name"],
        configmap.as_str(),
        "mounted at {mount_path}"
    );
    let file_name = conf_file.file_name().unwrap().to_str().unwrap();
    if let Some(items) = volume["configMap"]["items"].as_sequence() {
        assert!(
            items
                .iter()
                .any(|i| i["key"] == "headway.yaml" && i["path"] == file_name),
            "the ConfigMap's key headway.yaml must be mounted as {file_name}"
        );
    } else {
        assert_eq!(file_name, "headway.yaml");
    }

    // The read-only root filesystem: pingora's pid file and upgrade socket go to an emptyDir.
    for key in ["pid_file", "upgrade_sock"] {
        let path = str_of(&conf[key], key);
        assert!(
            mounts
                .iter()
                .any(|(mount, volume)| !volume["emptyDir"].is_null()
                    && Path::new(path).starts_with(mount)),
            "{key} {path} must be on an emptyDir: the root filesystem is read-only"
        );
    }

    // Probes: readiness on the admin /ready; liveness on something that stays 200 while draining.
    let listen = seq(&gateway["listen"], "listen");
    assert_eq!(listen.len(), 1);
    let listen_port = port_of(str_of(&listen[0], "listen"));
    let admin = str_of(&gateway["admin"]["listen"], "admin.listen");
    assert!(
        admin.starts_with("0.0.0.0:"),
        "admin.listen {admin}: the kubelet and Prometheus reach it on the pod IP"
    );
    let admin_port = port_of(admin);
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/ready");
    assert_eq!(
        container_port(&readiness["port"], container, "readiness"),
        admin_port
    );
    let liveness = &container["livenessProbe"];
    assert!(liveness.is_mapping(), "the gateway needs a liveness probe");
    assert_ne!(
        liveness["httpGet"]["path"], "/ready",
        "liveness on /ready would kill draining pods and pods waiting out a DNS outage"
    );

    // Services: the public one on port 80 to the listener, the admin one in-cluster only.
    let selecting: Vec<&Value> = rendered
        .of_kind("Service")
        .filter(|s| selects(&s["spec"]["selector"], labels))
        .collect();
    let public: Vec<&Value> = selecting
        .iter()
        .copied()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .collect();
    assert_eq!(public.len(), 1, "one LoadBalancer Service for the gateway");
    let public_ports = seq(&public[0]["spec"]["ports"], "ports");
    assert_eq!(
        public_ports.len(),
        1,
        "the LoadBalancer publishes the proxy only"
    );
    assert_eq!(public_ports[0]["port"].as_u64(), Some(80));
    assert_eq!(
        target_port(&public_ports[0], container, "LoadBalancer"),
        listen_port
    );
    let admin_services: Vec<&Value> = selecting
        .iter()
        .copied()
        .filter(|s| {
            seq(&s["spec"]["ports"], "ports")
                .iter()
                .any(|p| target_port(p, container, "Service") == admin_port)
        })
        .collect();
    assert_eq!(admin_services.len(), 1, "one Service for the admin port");
    let admin_service = admin_services[0];
    assert!(
        admin_service["spec"]["type"].is_null() || admin_service["spec"]["type"] == "ClusterIP",
        "the admin port must stay in-cluster"
    );
    let annotations = &admin_service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        admin_port.to_string().as_str()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Shutdown: the kubelet must not SIGKILL a pod that is still draining.
    let drain = seconds(&gateway["drain_time"], "drain_time")
        + conf["grace_period_seconds"]
            .as_f64()
            .expect("grace_period_seconds")
        + conf["graceful_shutdown_timeout_seconds"]
            .as_f64()
            .expect("graceful_shutdown_timeout_seconds");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} must exceed drain_time + grace_period_seconds + graceful_shutdown_timeout_seconds = {drain}"
    );

    // Availability: a disruption budget and a topology spread over the gateway's pods.
    let budgets: Vec<&Value> = rendered
        .of_kind("PodDisruptionBudget")
        .filter(|b| selects(&b["spec"]["selector"], labels))
        .collect();
    assert_eq!(budgets.len(), 1, "one PodDisruptionBudget for the gateway");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2);
    if let Some(min) = budgets[0]["spec"]["minAvailable"].as_u64() {
        assert!(
            min >= 1 && min < replicas,
            "minAvailable {min} of {replicas}"
        );
    }
    let spread = seq(
        &pod["topologySpreadConstraints"],
        "topologySpreadConstraints",
    );
    assert!(
        !spread.is_empty() && spread.iter().all(|c| selects(&c["labelSelector"], labels)),
        "the gateway's pods must be spread over nodes"
    );

    // An autoscaler on CPU that removes pods slower than one drains: at most one pod a period,
    // the period and the stabilization window both longer than terminationGracePeriodSeconds.
    let hpas: Vec<&Value> = rendered
        .of_kind("HorizontalPodAutoscaler")
        .filter(|h| h["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"])
        .collect();
    assert_eq!(hpas.len(), 1, "one HorizontalPodAutoscaler for the gateway");
    let hpa = &hpas[0]["spec"];
    assert_eq!(hpas[0]["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["minReplicas"].as_u64(), Some(replicas));
    assert!(seq(&hpa["metrics"], "metrics")
        .iter()
        .any(|m| m["resource"]["name"] == "cpu"));
    let down = &hpa["behavior"]["scaleDown"];
    let window = down["stabilizationWindowSeconds"].as_f64().unwrap();
    assert!(window > grace, "scale-down window {window} s");
    for policy in seq(&down["policies"], "scaleDown.policies") {
        assert_eq!(policy["type"], "Pods", "{policy:?}");
        assert_eq!(policy["value"].as_u64(), Some(1), "one pod at a time");
        assert!(
            policy["periodSeconds"].as_f64().unwrap() > grace,
            "{policy:?}"
        );
    }
}

/// The NetworkPolicies: the gateway's admin port from the monitoring namespace only, its proxy
/// port from anywhere; the service pods from the gateway pods only.
#[test]
fn network_policies_open_admin_to_monitoring_and_services_to_the_gateway_only() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    let policies: Vec<&Value> = rendered.of_kind("NetworkPolicy").collect();
    let selecting = |labels: &Value| -> Vec<&Value> {
        policies
            .iter()
            .copied()
            .filter(|p| selects_expr(&p["spec"]["podSelector"], labels))
            .collect()
    };
    let gateway = rendered.get("Deployment", "headway");
    let gateway_labels = &gateway["spec"]["template"]["metadata"]["labels"];
    let on_gateway = selecting(gateway_labels);
    assert_eq!(on_gateway.len(), 1, "one policy on the gateway pods");
    let rules = seq(&on_gateway[0]["spec"]["ingress"], "ingress");
    let container = only_container(gateway);
    for rule in rules {
        for port in seq(&rule["ports"], "ports") {
            let n = container_port(&port["port"], container, "NetworkPolicy port");
            if n == 9901 {
                let from = seq(&rule["from"], "from");
                assert_eq!(from.len(), 1, "admin: {rule:?}");
                assert_eq!(
                    from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "monitoring"
                );
                assert!(from[0]["podSelector"].is_null() && from[0]["ipBlock"].is_null());
            } else {
                assert_eq!(n, 8000, "only the proxy port is open to all");
                assert!(rule["from"].is_null(), "the proxy port: from anywhere");
            }
        }
    }
    for service in ["service1", "service2"] {
        let deployment = rendered.get("Deployment", service);
        let on = selecting(&deployment["spec"]["template"]["metadata"]["labels"]);
        assert_eq!(on.len(), 1, "one policy on {service}'s pods");
        for rule in seq(&on[0]["spec"]["ingress"], "ingress") {
            let from = seq(&rule["from"], "from");
            assert!(
                from.iter().all(|f| f["namespaceSelector"].is_null()
                    && selects(&f["podSelector"], gateway_labels)
                    && f["podSelector"]["matchLabels"]
                        .as_mapping()
                        .map(|m| m.len())
                        == Some(1)),
                "{service}: from the gateway pods only: {rule:?}"
            );
        }
    }
}

/// A podSelector's `matchLabels` and `In` expressions against a pod's labels.
fn selects_expr(selector: &Value, labels: &Value) -> bool {
    let exprs = selector["matchExpressions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let labels_ok = selector["matchLabels"].is_null() || selects(selector, labels);
    labels_ok
        && exprs.iter().all(|e| {
            e["operator"] == "In"
                && seq(&e["values"], "values")
                    .iter()
                    .any(|v| labels[str_of(&e["key"], "key")] == *v)
        })
}

/// `k8s/components/redis`: a Redis the gateway's conf counts its limits in, by the Service's
/// name and port, reachable from the gateway pods only; the conf the base one plus the limits;
/// strictly valid, and `-t` passes.
#[test]
fn the_redis_component_runs_a_redis_the_conf_counts_in() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rendered = Rendered::render_with_component("redis", dir.path());
    let (_, conf_text) = rendered.gateway_conf();
    let conf: Value = serde_yaml::from_str(&conf_text).unwrap();
    let base: Value = serde_yaml::from_str(&Rendered::render().gateway_conf().1).unwrap();
    let namespace = rendered.namespace();
    let service = rendered.get("Service", "redis");
    let port = seq(&service["spec"]["ports"], "ports")[0]["port"]
        .as_u64()
        .unwrap();
    let url = format!("redis://redis.{namespace}.svc.cluster.local.:{port}");
    let mut without_filters = conf.clone();
    for (i, route) in seq(&conf["gateway"]["routes"], "routes").iter().enumerate() {
        let filters = seq(&route["filters"], "filters");
        assert!(!filters.is_empty(), "route {i} has no limit");
        for f in filters {
            assert_eq!(f["name"], "rate_limit");
            assert_eq!(f["store"]["redis"]["url"].as_str(), Some(url.as_str()));
        }
        if let Some(m) = without_filters["gateway"]["routes"][i].as_mapping_mut() {
            m.remove("filters");
        }
    }
    assert_eq!(
        without_filters, base,
        "the conf must be the base one but for its filters"
    );
    let redis = rendered.deployment_selected_by(&service["spec"]["selector"], "Service redis");
    let labels = &redis["spec"]["template"]["metadata"]["labels"];
    let policy = rendered
        .of_kind("NetworkPolicy")
        .find(|p| selects_expr(&p["spec"]["podSelector"], labels))
        .expect("a NetworkPolicy on the Redis pods");
    let gateway = rendered.get("Deployment", "headway");
    for rule in seq(&policy["spec"]["ingress"], "ingress") {
        for from in seq(&rule["from"], "from") {
            assert!(selects(
                &from["podSelector"],
                &gateway["spec"]["template"]["metadata"]["labels"]
            ));
            assert!(from["namespaceSelector"].is_null());
        }
    }
    let conf_path = dir.path().join("headway.yaml");
    std::fs::write(&conf_path, &conf_text).unwrap();
    let (code, stdout, stderr) = run_headway(&["-t", "-c", &conf_path.to_string_lossy()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    if let Some(validator) = kubernetes_validate() {
        let all = dir.path().join("rendered.yaml");
        std::fs::write(&all, &rendered.text).unwrap();
        for version in [Some(OLDEST_KUBERNETES), None] {
            if let Err(report) = validate(&validator, std::slice::from_ref(&all), version) {
                panic!("k8s/ with components/redis does not validate: {report}");
            }
        }
    }
}

/// Every pod alike, as the restricted Pod Security level (enforced on the namespace) demands, and
/// more: non-root, no privilege, nothing writable but its volumes, probes and resource requests.
#[test]
fn every_pod_runs_non_root_unprivileged_and_read_only() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    for deployment in rendered.of_kind("Deployment") {
        let name = &deployment["metadata"]["name"];
        let pod = &deployment["spec"]["template"]["spec"];
        let container = only_container(deployment);
        let security = &container["securityContext"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name:?}");
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(10001),
            "{name:?}"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name:?}"
        );
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name:?}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name:?}");
        assert_eq!(
            security["capabilities"]["drop"],
            Value::from(vec!["ALL"]),
            "{name:?}"
        );
        assert!(
            container["resources"]["requests"].is_mapping(),
            "{name:?}: resources"
        );
        assert!(
            container["readinessProbe"].is_mapping(),
            "{name:?}: readiness"
        );
        assert!(
            container["livenessProbe"].is_mapping(),
            "{name:?}: liveness"
        );
    }
}

/// What cluster DNS publishes for a headless Service's named port: one SRV record per ready pod
/// (the pods' port, the pod's address in the additional section), and NXDOMAIN once none is
/// ready (CoreDNS's answer for a Service scaled to zero).
fn publish(dns: &DnsServer, srv_name: &str, port: u16, ready: &[&str]) {
    dns.set_headless_srv(srv_name, port, ready);
}

/// Sends `n` keep-alive GETs; returns hits per `x-served-by` address. Panics on any non-200.
fn spread(client: &mut Client, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut hits = BTreeMap::new();
    for _ in 0..n {
        let response = client
            .get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        *hits
            .entry(response.header("x-served-by").unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    hits
}

fn healthy(gateway: &Gateway, cluster: &str) -> Vec<String> {
    let clusters = http::get_json(gateway.admin_addr(), "/clusters");
    let mut set: Vec<String> = clusters["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == cluster))
        .and_then(|c| c["backends"].as_array())
        .into_iter()
        .flatten()
        .filter(|b| b["healthy"] == true)
        .filter_map(|b| b["address"].as_str().map(str::to_owned))
        .collect();
    set.sort();
    set
}

fn addrs(ips: &[&str], port: u16) -> Vec<String> {
    let mut addrs: Vec<String> = ips.iter().map(|ip| format!("{ip}:{port}")).collect();
    addrs.sort();
    addrs
}

#[test]
fn the_gateway_follows_headless_services_with_a_pods_view_of_dns() {
    if !have_kubectl() {
        return;
    }
    let rendered = Rendered::render();
    let namespace = rendered.namespace();
    let (_, conf_text) = rendered.gateway_conf();
    let conf: Value = serde_yaml::from_str(&conf_text).unwrap();
    let fqdn = |service: &str| format!("_http._tcp.{service}.{namespace}.svc.cluster.local.");

    // The pod's resolver: kubelet's resolv.conf (search list, ndots:5). The test's DNS server
    // cannot listen on port 53, so the conf names it as well; search and ndots come from the file.
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5\n"
        ),
    )
    .unwrap();
    let dns = DnsServer::start();

    // Pods: all on one port, as pods share their container port (the conf's 8080 may be taken
    // on this machine: the port is the one value replaced, with listen, admin and resolver).
    let port = free_port();
    let service1 = ["127.0.4.11", "127.0.4.12", "127.0.4.13"];
    let service2 = ["127.0.4.21", "127.0.4.22"];
    let scaled_up = ["127.0.4.14", "127.0.4.15"];
    let not_ready = "127.0.4.23"; // running, but its readiness probe fails: not in DNS
    let mut pods: Vec<Backend> = Vec::new();
    for ip in service1.iter().chain(&scaled_up) {
        pods.push(Backend::start(ip, port, "service1"));
    }
    for ip in service2.iter().chain([&not_ready]) {
        pods.push(Backend::start(ip, port, "service2"));
    }
    publish(&dns, &fqdn("service1"), port, &service1);
    publish(&dns, &fqdn("service2"), port, &service2);

    // The rendered conf, with only listen, admin and resolver replaced: the pods' port comes
    // from the SRV records.
    let clusters = conf["gateway"]["clusters"].clone();
    let mut rest = conf["gateway"].as_mapping().unwrap().clone();
    for key in ["listen", "admin", "resolver", "routes", "clusters"] {
        rest.remove(key);
    }
    let gateway = Gateway::builder()
        .resolver_yaml(&format!(
            "resolv_conf: {}\nnameservers: [\"{}\"]",
            resolv.display(),
            dns.addr()
        ))
        .routes_yaml(&serde_yaml::to_string(&conf["gateway"]["routes"]).unwrap())
        .clusters_yaml(&serde_yaml::to_string(&clusters).unwrap())
        .gateway_yaml(&serde_yaml::to_string(&rest).unwrap())
        .server_key("threads", &conf["threads"].as_u64().unwrap().to_string())
        .start();
    // /ready answers 200 as soon as the clusters' first round is done, a moment before pingora
    // binds the proxy listeners (seen under load: connection refused right after /ready): that
    // race is the gateway's, not this test's subject, so wait for the port itself.
    assert!(wait_until(Duration::from_secs(5), || {
        TcpStream::connect(gateway.listen_addr()).is_ok()
    }));
    let mut client = Client::new(gateway.listen_addr());

    // Each prefix reaches every ready pod of its own Service, and only those.
    let hits = spread(&mut client, "/service/1", 60);
    assert_eq!(
        hits.keys().cloned().collect::<Vec<_>>(),
        addrs(&service1, port)
    );
    assert!(hits.values().all(|&n| n >= 10), "uneven spread: {hits:?}");
    let hits = spread(&mut client, "/service/2/hello", 40);
    assert_eq!(
        hits.keys().cloned().collect::<Vec<_>>(),
        addrs(&service2, port),
        "a pod that is not ready is not in DNS and must get nothing"
    );

    // `kubectl scale deploy/service1 --replicas=5`: two more pods become ready.
    let five: Vec<&str> = service1.iter().chain(&scaled_up).copied().collect();
    publish(&dns, &fqdn("service1"), port, &five);
    assert!(
        wait_until(Duration::from_secs(15), || healthy(&gateway, "service1")
            == addrs(&five, port)),
        "the gateway did not follow service1 to 5 pods: {:?}",
        healthy(&gateway, "service1")
    );
    let hits = spread(&mut client, "/service/1", 100);
    assert_eq!(hits.keys().cloned().collect::<Vec<_>>(), addrs(&five, port));

    // `kubectl scale deploy/service2 --replicas=0`: NXDOMAIN, and the gateway says so.
    publish(&dns, &fqdn("service2"), port, &[]);
    assert!(
        wait_until(Duration::from_secs(15), || healthy(&gateway, "service2")
            .is_empty()),
        "service2 scaled to zero still has backends: {:?}",
        healthy(&gateway, "service2")
    );
    let response = http::get(gateway.listen_addr(), "/service/2").unwrap();
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response
            .body
            .contains("no healthy upstream for cluster service2"),
        "{}",
        response.body
    );
    assert_eq!(spread(&mut client, "/service/1", 10).len(), 5);
    let ready = http::get(gateway.admin_addr(), "/ready").unwrap();
    assert_eq!(
        ready.status, 200,
        "an empty cluster is not a reason to leave the LoadBalancer"
    );

    // Back to one pod, the one that was not ready before.
    publish(&dns, &fqdn("service2"), port, &[not_ready]);
    assert!(wait_until(Duration::from_secs(15), || healthy(
        &gateway, "service2"
    ) == addrs(
        &[not_ready],
        port
    )));
    let hits = spread(&mut client, "/service/2", 10);
    assert_eq!(
        hits.keys().cloned().collect::<Vec<_>>(),
        addrs(&[not_ready], port)
    );

    // The final dot pays off: under ndots:5 every name asked is one the gateway meant — the SRV
    // names and their targets, which cluster DNS writes fully qualified — never one with a
    // search domain appended (three NXDOMAIN lookups per refresh before the real one).
    let published: BTreeSet<String> = ["service1", "service2"].iter().map(|s| fqdn(s)).collect();
    let asked = dns.zone().asked();
    assert!(asked.len() >= 4, "too few queries to judge: {asked:?}");
    for name in &asked {
        let meant = published.contains(name)
            || name.ends_with(&format!(".service1.{namespace}.svc.cluster.local."))
            || name.ends_with(&format!(".service2.{namespace}.svc.cluster.local."));
        assert!(
            meant && name.matches(".svc.cluster.local").count() == 1,
            "{name} was asked: a name went through the search list"
        );
    }
}

/// `k8s/components/tls`: the Secret `headway-tls` mounted where the conf's TLS listener reads its
/// files, the TLS port named and published on 443, the conf otherwise the base one; strictly
/// valid, and `-t` passes once the Secret's files exist.
#[test]
fn the_tls_component_mounts_the_secret_the_conf_reads_and_publishes_443() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rendered = Rendered::render_with_component("tls", dir.path());
    let (configmap, conf_text) = rendered.gateway_conf();
    let conf: Value = serde_yaml::from_str(&conf_text).unwrap();
    let base: Value = serde_yaml::from_str(&Rendered::render().gateway_conf().1).unwrap();
    let (mut without_listen, mut base_without_listen) = (conf.clone(), base.clone());
    without_listen["gateway"]["listen"] = Value::Null;
    base_without_listen["gateway"]["listen"] = Value::Null;
    assert_eq!(
        without_listen, base_without_listen,
        "the TLS conf must be the base conf but for listen:"
    );

    let listeners = seq(&conf["gateway"]["listen"], "listen");
    let tls_listener = listeners
        .iter()
        .find(|l| !l["tls"].is_null())
        .expect("a TLS listener in the component's conf");
    let (cert, key) = (
        str_of(&tls_listener["tls"]["cert"], "tls.cert"),
        str_of(&tls_listener["tls"]["key"], "tls.key"),
    );
    let deployment = rendered.mounting(&configmap);
    let container = only_container(deployment);
    let volumes = seq(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    );
    let secret = volumes
        .iter()
        .find(|v| v["secret"]["secretName"] == "headway-tls")
        .expect("the Secret headway-tls as a volume");
    let mount = seq(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["name"] == secret["name"])
        .expect("the Secret's volume mounted");
    let at = str_of(&mount["mountPath"], "mountPath");
    // The key readable by the container's group and no one else.
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["fsGroup"],
        pod["securityContext"]["runAsGroup"]
    );
    assert_eq!(secret["secret"]["defaultMode"].as_u64(), Some(0o440));
    assert_eq!(
        cert,
        format!("{at}/tls.crt"),
        "kubernetes.io/tls keys: tls.crt"
    );
    assert_eq!(key, format!("{at}/tls.key"));
    let port = port_of(str_of(&tls_listener["address"], "address"));
    let https = seq(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == "https")
        .expect("a container port named https");
    assert_eq!(https["containerPort"].as_u64(), Some(u64::from(port)));
    let service = rendered.get("Service", "headway");
    let published = seq(&service["spec"]["ports"], "ports")
        .iter()
        .find(|p| p["port"] == 443)
        .expect("the Service publishes 443");
    assert_eq!(
        target_port(published, container, "Service headway:443"),
        port
    );

    // `-t` with the Secret's files where the conf names them (here: in a temp dir).
    let files = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["api.example.com".to_owned()]).unwrap();
    std::fs::write(files.path().join("tls.crt"), made.cert.pem()).unwrap();
    std::fs::write(
        files.path().join("tls.key"),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    let local = conf_text.replace(at, &files.path().display().to_string());
    let conf_path = files.path().join("headway.yaml");
    std::fs::write(&conf_path, local).unwrap();
    let (code, stdout, stderr) = run_headway(&["-t", "-c", &conf_path.to_string_lossy()]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    if let Some(validator) = kubernetes_validate() {
        let all = dir.path().join("rendered.yaml");
        std::fs::write(&all, &rendered.text).unwrap();
        for version in [Some(OLDEST_KUBERNETES), None] {
            if let Err(report) = validate(&validator, std::slice::from_ref(&all), version) {
                panic!("k8s/ with components/tls does not validate: {report}");
            }
        }
    }
}

/// `k8s/components/monitoring`: a PodMonitor that scrapes the gateway pods' admin port (the port
/// the conf's admin listener is on), a PrometheusRule with exactly the groups of
/// monitoring/headway-alerts.yaml, and the Grafana dashboard's ConfigMap holding
/// monitoring/headway-dashboard.json (scripts/monitoring.sh writes both copies); in the
/// namespace of everything else, and the objects that need no CRD strictly valid.
#[test]
fn the_monitoring_component_scrapes_the_admin_port_and_carries_the_rules_and_the_dashboard() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rendered = Rendered::render_with_component("monitoring", dir.path());
    let namespace = rendered.namespace();
    let stale = "run scripts/monitoring.sh after editing monitoring/";

    let rule = rendered.get("PrometheusRule", "headway");
    let alerts: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("monitoring/headway-alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"], "{stale}");

    let dashboard = rendered.get("ConfigMap", "headway-grafana-dashboard");
    let json = std::fs::read_to_string(repo().join("monitoring/headway-dashboard.json")).unwrap();
    assert_eq!(
        str_of(&dashboard["data"]["headway-dashboard.json"], "dashboard"),
        json,
        "{stale}"
    );
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");

    let monitor = rendered.get("PodMonitor", "headway");
    let gateway =
        rendered.deployment_selected_by(&monitor["spec"]["selector"]["matchLabels"], "PodMonitor");
    let container = only_container(gateway);
    let endpoints = seq(
        &monitor["spec"]["podMetricsEndpoints"],
        "podMetricsEndpoints",
    );
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["path"], "/metrics");
    let port_name = str_of(&endpoints[0]["port"], "port");
    let port = seq(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("no container port named {port_name}"));
    let conf: Value = serde_yaml::from_str(&rendered.gateway_conf().1).unwrap();
    let admin = port_of(str_of(&conf["gateway"]["admin"]["listen"], "admin.listen"));
    assert_eq!(port["containerPort"].as_u64(), Some(u64::from(admin)));

    for object in [rule, dashboard, monitor] {
        assert_eq!(object["metadata"]["namespace"], namespace.as_str());
    }

    // kubernetes-validate knows no CRD: the rest of the rendering validates strictly.
    if let Some(validator) = kubernetes_validate() {
        let plain: Vec<String> = rendered
            .objects
            .iter()
            .filter(|o| o["apiVersion"] != "monitoring.coreos.com/v1")
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect();
        let all = dir.path().join("rendered.yaml");
        std::fs::write(&all, plain.join("---\n")).unwrap();
        for version in [Some(OLDEST_KUBERNETES), None] {
            if let Err(report) = validate(&validator, std::slice::from_ref(&all), version) {
                panic!("k8s/ with components/monitoring does not validate: {report}");
            }
        }
    }
}
