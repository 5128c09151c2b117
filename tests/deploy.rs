//! The deployment files, checked offline against the real engine: the Dockerfile, the
//! entrypoint, `scripts/deploy/compose.yaml`, the Kubernetes manifests (against the
//! vendored JSON schemas in `scripts/deploy/k8s/schemas/`), the Prometheus configuration
//! and the Grafana dashboard.
//!
//! No container engine or cluster runs here. What a schema cannot say is checked against
//! the built `alphapulse` binary and a running engine instead: every environment variable
//! the files set is one the engine reads, the manifests' values pass `config check` for
//! every instance, the probe paths answer 200, and every metric the dashboard queries is
//! one `/metrics` exports. `promtool` (installed by scripts/setup.sh) checks the
//! Prometheus configuration and the dashboard's PromQL; without it those parts are skipped
//! with a printed reason.

#[path = "support/engine.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alphapulse::market::Interval;
use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_alphapulse");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Completeness and REST metrics the dashboard must show (it is checked against
/// `/metrics` like every other name).
const COMPLETENESS_METRICS: [&str; 11] = [
    "alphapulse_completeness_ratio",
    "alphapulse_missing_candles",
    "alphapulse_open_gaps",
    "alphapulse_last_closed_age_seconds",
    "alphapulse_gaps_filled_total",
    "alphapulse_candles_backfilled_total",
    "alphapulse_confirmed_absent_candles_total",
    "alphapulse_rest_requests_total",
    "alphapulse_rest_rate_limited_total",
    "alphapulse_rest_used_weight_1m",
    "alphapulse_rotations_total",
];

/// Where the vendored Kubernetes definitions say they live; the kind schemas refer to
/// them by this URI.
const K8S_DEFINITIONS_URI: &str = "https://kubernetes.io/api/_definitions.json";

/// The schema file for each (apiVersion, kind) the manifests may use.
const SCHEMAS: [(&str, &str, &str); 5] = [
    ("apps/v1", "StatefulSet", "statefulset-apps-v1.json"),
    ("v1", "Service", "service-v1.json"),
    ("v1", "Secret", "secret-v1.json"),
    ("v1", "ConfigMap", "configmap-v1.json"),
    (
        "kustomize.config.k8s.io/v1beta1",
        "Kustomization",
        "kustomization.json",
    ),
];

/// Services of compose.yaml that run the AlphaPulse image.
const COMPOSE_ALPHAPULSE_SERVICES: [&str; 3] = ["simulator", "migrate", "engine"];

/// A value for probing whether the engine reads a variable: invalid for every typed
/// setting, and shown verbatim by `config print` for the free-form ones (paths).
const PROBE_VALUE: &str = "#probe#";

// ---------------------------------------------------------------------------------------
// Files

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn deploy_dir() -> PathBuf {
    root().join("scripts/deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every document of a YAML file as JSON, with `<<` merge keys applied (compose.yaml
/// uses them).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = serde_norway::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(&v).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.remove(0)
}

fn k8s(name: &str) -> Value {
    yaml_doc(&deploy_dir().join("k8s").join(name))
}

fn compose() -> Value {
    yaml_doc(&deploy_dir().join("compose.yaml"))
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// A YAML mapping of strings (a ConfigMap's data, a compose environment) as pairs.
fn string_map(v: &Value, what: &str) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: expected a mapping, got {v}"))
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => panic!("{what}.{k}: environment values must be strings, got {other}"),
            };
            (k.clone(), value)
        })
        .collect()
}

/// The port of an `IP:PORT` address.
fn port_of(addr: &str) -> u16 {
    let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
    port.parse()
        .unwrap_or_else(|_| panic!("{addr}: no port at the end"))
}

// ---------------------------------------------------------------------------------------
// The binary

/// Runs the binary in a fresh directory with only PATH, HOME and `env` set.
fn run_alphapulse(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    let dir = TempDir::new("run");
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(&dir.0).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(env);
    cmd.output().expect("the alphapulse binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Does the engine read `name`? Setting it to [`PROBE_VALUE`] must change what `config
/// check` or `config print` says: an error naming a typed setting, or the value shown
/// for a free-form one. A variable the engine ignores changes neither.
fn engine_reads(name: &str) -> bool {
    let outcome = |env: &BTreeMap<String, String>| {
        let check = run_alphapulse(&["config", "check"], env);
        let print = run_alphapulse(&["config", "print"], env);
        (
            check.status.code(),
            text(&check.stdout),
            text(&check.stderr),
            text(&print.stdout),
            text(&print.stderr),
        )
    };
    let base = BTreeMap::new();
    let probed = BTreeMap::from([(name.to_owned(), PROBE_VALUE.to_owned())]);
    outcome(&base) != outcome(&probed)
}

/// Asserts that the engine reads every one of `names` (memoised across calls).
fn assert_engine_reads(names: &BTreeSet<String>, source: &str) {
    assert!(
        !names.is_empty(),
        "{source}: no environment variables found"
    );
    for name in names {
        assert!(
            engine_reads(name),
            "{source} sets {name}, which alphapulse does not read (a typo, or a name not in the README's configuration)"
        );
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "alphapulse-deploy-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `promtool ARGS…`, or `None` (with the reason printed) when it is not installed;
/// under CI (`CI` set) a missing promtool fails the test instead.
fn promtool(args: &[&str]) -> Option<Output> {
    match Command::new("promtool")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool {} ({e}): not installed, and CI must run it; scripts/setup.sh installs it",
                args.join(" ")
            );
            eprintln!(
                "skipped: promtool {} ({e}); scripts/setup.sh installs it",
                args.join(" ")
            );
            None
        }
    }
}

/// Runs `promtool ARGS…` and asserts it succeeds (skipped as [`promtool`] says).
fn promtool_passes(args: &[&str]) {
    if let Some(out) = promtool(args) {
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn k8s_validator(schema_file: &str) -> jsonschema::Validator {
    let dir = deploy_dir().join("k8s/schemas");
    let load = |name: &str| -> Value {
        serde_json::from_str(&read(&dir.join(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let definitions = load("_definitions.json");
    let registry = jsonschema::Registry::new()
        .add(K8S_DEFINITIONS_URI, &definitions)
        .expect("the definitions register")
        .prepare()
        .expect("the registry prepares");
    jsonschema::options()
        .offline()
        .with_registry(&registry)
        .build(&load(schema_file))
        .unwrap_or_else(|e| panic!("{schema_file}: {e}"))
}

fn schema_file_for(api_version: &str, kind: &str) -> Option<&'static str> {
    SCHEMAS
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind)
        .map(|(_, _, file)| *file)
}

/// The schema's complaints about `doc`, one line each.
fn schema_errors(doc: &Value) -> Vec<String> {
    let api_version = str_of(&doc["apiVersion"], "apiVersion");
    let kind = str_of(&doc["kind"], "kind");
    let file = schema_file_for(api_version, kind)
        .unwrap_or_else(|| panic!("no vendored schema for {api_version} {kind}"));
    let validator = k8s_validator(file);
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_yaml_document_under_scripts_deploy_parses() {
    let files = yaml_files(&deploy_dir());
    assert!(files.len() >= 10, "found only {files:?}");
    for file in &files {
        let docs = yaml_docs(file);
        assert!(!docs.is_empty(), "{}: no document", file.display());
        for doc in docs {
            assert!(
                doc.is_object(),
                "{}: a document is not a mapping",
                file.display()
            );
        }
    }
}

#[test]
fn kubernetes_objects_match_the_vendored_schemas() {
    let mut kinds = BTreeSet::new();
    for file in yaml_files(&deploy_dir().join("k8s")) {
        for doc in yaml_docs(&file) {
            let errors = schema_errors(&doc);
            assert!(
                errors.is_empty(),
                "{}:\n{}",
                file.display(),
                errors.join("\n")
            );
            kinds.insert(str_of(&doc["kind"], "kind").to_owned());
        }
    }
    let expected: BTreeSet<String> = SCHEMAS.iter().map(|(_, k, _)| k.to_string()).collect();
    assert_eq!(
        kinds, expected,
        "every vendored kind is used, and only those"
    );
}

#[test]
fn the_schemas_reject_typos_and_wrong_types() {
    let good = k8s("statefulset.yaml");
    assert!(schema_errors(&good).is_empty());

    let mut typo = good.clone();
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = serde_json::json!({});
    let errors = schema_errors(&typo);
    assert!(errors.iter().any(|e| e.contains("resource")), "{errors:?}");

    let mut wrong_type = good.clone();
    wrong_type["spec"]["replicas"] = Value::String("3".into());
    assert!(!schema_errors(&wrong_type).is_empty());

    let mut missing = good;
    missing["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert!(!schema_errors(&missing).is_empty());

    let mut kustomization = k8s("kustomization.yaml");
    kustomization["resource"] = serde_json::json!(["x.yaml"]);
    assert!(!schema_errors(&kustomization).is_empty());
}

/// The engine container of the StatefulSet.
fn engine_container(sts: &Value) -> &Value {
    sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "engine")
        .expect("a container named engine")
}

/// The environment one pod sees: the ConfigMap, the Secret template, INSTANCE_INDEX.
fn pod_env(index: u32) -> BTreeMap<String, String> {
    let mut env = string_map(&k8s("configmap.yaml")["data"], "configmap data");
    env.extend(string_map(
        &k8s("secret.template.yaml")["stringData"],
        "secret stringData",
    ));
    env.insert("INSTANCE_INDEX".into(), index.to_string());
    env
}

#[test]
fn the_statefulset_agrees_with_its_configmap_services_and_the_engine() {
    let sts = k8s("statefulset.yaml");
    let config = string_map(&k8s("configmap.yaml")["data"], "configmap data");
    let replicas = sts["spec"]["replicas"].as_u64().expect("spec.replicas");
    assert_eq!(
        config["INSTANCE_COUNT"],
        replicas.to_string(),
        "INSTANCE_COUNT must equal spec.replicas"
    );

    // The ordinal reaches the engine as INSTANCE_INDEX.
    let engine = engine_container(&sts);
    let index_env = engine["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "INSTANCE_INDEX")
        .expect("INSTANCE_INDEX in the engine's env");
    assert_eq!(
        index_env["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert!(!config.contains_key("INSTANCE_INDEX"));

    // envFrom names the ConfigMap and the Secret of this directory.
    let names: BTreeSet<(String, String)> = engine["envFrom"]
        .as_array()
        .expect("envFrom")
        .iter()
        .flat_map(|e| {
            [("configMapRef", "ConfigMap"), ("secretRef", "Secret")]
                .into_iter()
                .filter_map(|(key, kind)| {
                    e[key]["name"]
                        .as_str()
                        .map(|n| (kind.to_owned(), n.to_owned()))
                })
        })
        .collect();
    let defined: BTreeSet<(String, String)> = ["configmap.yaml", "secret.template.yaml"]
        .iter()
        .map(|f| {
            let d = k8s(f);
            (
                str_of(&d["kind"], "kind").to_owned(),
                str_of(&d["metadata"]["name"], "name").to_owned(),
            )
        })
        .collect();
    assert_eq!(names, defined);

    // The dashboard port: container port, probes, annotations and Services agree with
    // DASHBOARD_ADDR.
    let port = port_of(&config["DASHBOARD_ADDR"]);
    let ports = engine["ports"].as_array().expect("ports");
    let dashboard = ports
        .iter()
        .find(|p| p["name"] == "dashboard")
        .expect("a port named dashboard");
    assert_eq!(dashboard["containerPort"].as_u64(), Some(u64::from(port)));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &engine[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == "dashboard" || get["port"].as_u64() == Some(u64::from(port)),
            "{probe} port {}",
            get["port"]
        );
    }
    let annotations = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    assert_eq!(
        &sts["spec"]["selector"]["matchLabels"],
        &Value::Object(pod_labels.clone())
    );
    for file in ["service-headless.yaml", "service-dashboard.yaml"] {
        let svc = k8s(file);
        for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(pod_labels.get(k), Some(v), "{file} selects {k}={v}");
        }
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            assert!(
                p["targetPort"] == "dashboard" || p["targetPort"].as_u64() == Some(u64::from(port)),
                "{file}: targetPort {}",
                p["targetPort"]
            );
        }
    }
    let headless = k8s("service-headless.yaml");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(sts["spec"]["serviceName"], headless["metadata"]["name"]);

    // Guaranteed QoS: every container's requests equal its limits, in whole CPUs.
    let pod = &sts["spec"]["template"]["spec"];
    let containers = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["initContainers"].as_array().into_iter().flatten());
    for c in containers {
        let r = &c["resources"];
        assert_eq!(
            r["requests"], r["limits"],
            "{}: requests != limits",
            c["name"]
        );
        let cpu = &r["limits"]["cpu"];
        let whole = cpu.as_u64().is_some()
            || cpu
                .as_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        assert!(whole, "{}: cpu {cpu} is not a whole number", c["name"]);
        assert!(r["limits"]["memory"].is_string(), "{}: memory", c["name"]);
    }

    // Non-root as the image's user, io_uring allowed through a Localhost profile.
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(
        security["runAsUser"].as_u64(),
        Some(u64::from(dockerfile_uid()))
    );
    assert_eq!(security["seccompProfile"]["type"], "Localhost");
    let profile = str_of(&security["seccompProfile"]["localhostProfile"], "profile");
    assert!(profile.ends_with(".json"), "{profile}");

    // The migrations run before the engine, which then does not run them again.
    let init = pod["initContainers"].as_array().expect("initContainers");
    assert_eq!(init[0]["args"], serde_json::json!(["migrate"]));
    assert_eq!(config["DATABASE_MIGRATE_ON_START"], "false");

    // Every instance's environment passes the engine's own checks.
    for index in 0..u32::try_from(replicas).unwrap() {
        let mut env = pod_env(index);
        // Pinning depends on this machine's cores; the layout rules are unit-tested.
        env.insert("ALPHAPULSE_PIN_CORES".into(), "false".into());
        let out = run_alphapulse(&["config", "check"], &env);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "instance {index}: {}{stdout}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("instance: {index} of {replicas} ")),
            "{stdout}"
        );
        assert!(stdout.contains("database: configured"), "{stdout}");
        assert!(stdout.contains("redis: configured"), "{stdout}");
    }
}

#[test]
fn every_kubernetes_environment_variable_is_one_the_engine_reads() {
    let mut names: BTreeSet<String> = pod_env(0).into_keys().collect();
    let sts = k8s("statefulset.yaml");
    for e in engine_container(&sts)["env"].as_array().unwrap() {
        names.insert(str_of(&e["name"], "env name").to_owned());
    }
    assert_engine_reads(&names, "scripts/deploy/k8s");
}

#[test]
fn the_kustomization_lists_the_manifests_but_not_the_secret_template() {
    let dir = deploy_dir().join("k8s");
    let k = k8s("kustomization.yaml");
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "resource"))
        .collect();
    for r in &resources {
        assert!(dir.join(r).is_file(), "{r} is not a file in k8s/");
    }
    let manifests: BTreeSet<String> = yaml_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml" && n != "secret.template.yaml")
        .collect();
    let listed: BTreeSet<String> = resources.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, manifests);
    // The image the kustomization retags is the one the manifests use.
    let image = str_of(&k["images"][0]["name"], "image name");
    let sts = k8s("statefulset.yaml");
    let used = str_of(&engine_container(&sts)["image"], "image");
    assert_eq!(used.split(':').next(), Some(image));
}

// ---------------------------------------------------------------------------------------
// The Dockerfile and the entrypoint

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(&root().join("Dockerfile")).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// The numeric user the runtime stage runs as.
fn dockerfile_uid() -> u32 {
    let user = dockerfile_instructions()
        .into_iter()
        .rfind(|(op, _)| op == "USER")
        .expect("a USER instruction")
        .1;
    let uid = user.split(':').next().unwrap_or("");
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user}: name the user by number"))
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_the_binary_as_a_user_in_another() {
    let ins = dockerfile_instructions();
    let froms: Vec<&str> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("rust:") && froms[0].ends_with(" AS build"),
        "{}",
        froms[0]
    );
    assert!(froms[1].starts_with("debian:"), "{}", froms[1]);
    assert!(froms[1].contains("-slim"), "{}", froms[1]);

    let runs: Vec<&str> = ins
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, r)| r.as_str())
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked --bin alphapulse")),
        "{runs:?}"
    );

    // The toolchain is at least the crate's rust-version.
    let arg = |name: &str| {
        ins.iter()
            .find_map(|(op, rest)| {
                (op == "ARG")
                    .then(|| rest.strip_prefix(&format!("{name}=")))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("ARG {name}"))
            .to_owned()
    };
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let manifest: toml::Value = toml::from_str(&read(&root().join("Cargo.toml"))).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    assert!(version(&arg("RUST_VERSION")) >= version(msrv));

    // Every file copied from the build context exists and is not ignored.
    let ignored: Vec<String> = read(&root().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_owned())
        .collect();
    let mut copied_binary = false;
    let mut copied_entrypoint = false;
    for (op, rest) in &ins {
        if op != "COPY" {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let (dest, sources) = words.split_last().unwrap();
        if words[0].starts_with("--from=") {
            if words[0] == "--from=build" && *dest == "/usr/local/bin/alphapulse" {
                copied_binary = true;
            }
            continue;
        }
        for source in sources.iter().filter(|s| !s.starts_with("--")) {
            let source = source.trim_end_matches('/');
            assert!(root().join(source).exists(), "COPY {source}: no such file");
            assert!(
                !ignored.iter().any(|i| i == source),
                ".dockerignore excludes {source}, which the Dockerfile copies"
            );
            if source == "scripts/deploy/entrypoint.sh" {
                copied_entrypoint = *dest == "/usr/local/bin/alphapulse-entrypoint";
            }
        }
    }
    assert!(copied_binary, "the binary is copied from the build stage");
    assert!(copied_entrypoint, "the entrypoint is copied");
    for must in ["target", ".git", ".env"] {
        assert!(ignored.iter().any(|i| i == must), ".dockerignore: {must}");
    }

    assert_ne!(dockerfile_uid(), 0, "the image must not run as root");
    let entrypoint = ins.iter().find(|(op, _)| op == "ENTRYPOINT").unwrap();
    assert_eq!(entrypoint.1, r#"["alphapulse-entrypoint"]"#);
    let healthcheck = ins.iter().find(|(op, _)| op == "HEALTHCHECK").unwrap();
    assert!(healthcheck.1.contains("/healthz"), "{}", healthcheck.1);
}

/// Runs the entrypoint with the built binary first on PATH.
fn run_entrypoint(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = TempDir::new("entrypoint");
    Command::new("bash")
        .arg(deploy_dir().join("entrypoint.sh"))
        .args(args)
        .current_dir(&dir.0)
        .env_clear()
        .env("PATH", path)
        .env("ALPHAPULSE_PIN_CORES", "false")
        .envs(env.iter().copied())
        .output()
        .expect("bash runs the entrypoint")
}

#[test]
fn the_entrypoint_takes_the_instance_index_from_the_hostname_when_the_label_is_missing() {
    let symbols = pod_env(0)["SYMBOLS"].clone();
    let env = [("SYMBOLS", symbols.as_str()), ("INSTANCE_COUNT", "3")];

    let with = |extra: &[(&'static str, &'static str)]| {
        let all: Vec<(&str, &str)> = env.iter().chain(extra).copied().collect();
        run_entrypoint(&["config", "check"], &all)
    };
    let out = with(&[("INSTANCE_INDEX", ""), ("HOSTNAME", "alphapulse-2")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("instance: 2 of 3 "));

    // The label wins when Kubernetes provides it.
    let out = with(&[("INSTANCE_INDEX", "1"), ("HOSTNAME", "alphapulse-2")]);
    assert!(text(&out.stdout).contains("instance: 1 of 3 "));

    // Unset (compose, docker run) leaves the engine's default.
    let out = with(&[("HOSTNAME", "alphapulse-2")]);
    assert!(text(&out.stdout).contains("instance: 0 of 3 "));

    let out = with(&[("INSTANCE_INDEX", ""), ("HOSTNAME", "engine")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: INSTANCE_INDEX is empty and the hostname 'engine'"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// compose.yaml

/// Expands compose's `${NAME:-default}`, `${NAME-default}` and `${NAME}` with nothing
/// set, as a fresh checkout without a .env file would see them.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("{value}: unclosed ${{"));
        let inner = &rest[start + 2..start + end];
        assert!(
            !inner.contains(":?"),
            "{value}: compose would refuse to start without {inner}"
        );
        let default = inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map(|(_, d)| d)
            .unwrap_or("");
        out.push_str(default);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose_env(service: &Value, name: &str) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        env => string_map(env, &format!("services.{name}.environment"))
            .into_iter()
            .map(|(k, v)| (k, interpolate(&v)))
            .collect(),
    }
}

#[test]
fn compose_runs_the_database_redis_simulator_migration_and_engine() {
    let doc = compose();
    let services = doc["services"].as_object().expect("services");
    for name in ["timescaledb", "redis", "simulator", "migrate", "engine"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    assert!(
        str_of(&services["timescaledb"]["image"], "image").starts_with("timescale/timescaledb:")
    );
    assert!(str_of(&services["redis"]["image"], "image").starts_with("redis:"));

    let compose_dir = deploy_dir();
    for name in COMPOSE_ALPHAPULSE_SERVICES {
        let s = &services[name];
        let context = compose_dir.join(str_of(&s["build"]["context"], "build.context"));
        let dockerfile = str_of(&s["build"]["dockerfile"], "build.dockerfile");
        assert_eq!(
            context.join(dockerfile).canonicalize().unwrap(),
            root().join("Dockerfile").canonicalize().unwrap(),
            "{name} builds the repository's Dockerfile"
        );
    }

    // Every long-running service reports its health, and the engine waits for it.
    for name in ["timescaledb", "redis", "simulator", "engine"] {
        assert!(
            services[name]["healthcheck"]["test"].is_array(),
            "{name} has no healthcheck"
        );
    }
    let depends = &services["engine"]["depends_on"];
    assert_eq!(
        depends["migrate"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(depends["redis"]["condition"], "service_healthy");
    assert_eq!(depends["simulator"]["condition"], "service_healthy");
    assert_eq!(
        services["migrate"]["depends_on"]["timescaledb"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["migrate"])
    );
    assert_eq!(services["engine"]["command"], serde_json::json!(["run"]));

    // The io_uring users get the seccomp profile and an unlimited memlock.
    for name in ["simulator", "engine"] {
        let s = &services[name];
        let opts: Vec<&str> = s["security_opt"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: security_opt"))
            .iter()
            .map(|o| str_of(o, "security_opt"))
            .collect();
        let profile = opts
            .iter()
            .find_map(|o| o.strip_prefix("seccomp="))
            .unwrap_or_else(|| panic!("{name}: no seccomp profile"));
        assert!(compose_dir.join(profile).is_file(), "{name}: {profile}");
        assert_eq!(s["ulimits"]["memlock"]["soft"], -1, "{name}");
        assert_eq!(s["ulimits"]["memlock"]["hard"], -1, "{name}");
    }

    // The engine talks to the simulator, the database and Redis by service name.
    let engine_env = compose_env(&services["engine"], "engine");
    let sim_command: Vec<&str> = services["simulator"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(c, "command"))
        .collect();
    assert_eq!(sim_command[0], "simulate");
    let listen = sim_command[sim_command.iter().position(|c| *c == "--listen").unwrap() + 1];
    let sim_port = port_of(listen);
    assert_eq!(
        engine_env["BINANCE_WS_URL"],
        format!("ws://simulator:{sim_port}")
    );
    assert_eq!(
        engine_env["BINANCE_REST_URL"],
        format!("http://simulator:{sim_port}")
    );
    assert!(engine_env["DATABASE_URL"].contains("@timescaledb:5432/"));
    assert_eq!(engine_env["REDIS_URL"], "redis://redis:6379");
    let migrate_env = compose_env(&services["migrate"], "migrate");
    assert_eq!(migrate_env["DATABASE_URL"], engine_env["DATABASE_URL"]);

    // The published port is the dashboard's, on the host's loopback only.
    let port = port_of(&engine_env["DASHBOARD_ADDR"]);
    for service in services.values() {
        for p in service["ports"].as_array().into_iter().flatten() {
            assert!(str_of(p, "port").starts_with("127.0.0.1:"), "{p}");
        }
    }
    let published = str_of(&services["engine"]["ports"][0], "port");
    assert_eq!(published, format!("127.0.0.1:{port}:{port}"));

    // Bind-mounted files exist.
    for service in services.values() {
        for v in service["volumes"].as_array().into_iter().flatten() {
            let source = str_of(v, "volume").split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(compose_dir.join(source).exists(), "volume {source}");
            }
        }
    }

    // The engine's environment passes its own checks.
    let mut env = engine_env.clone();
    env.insert("ALPHAPULSE_PIN_CORES".into(), "false".into());
    let out = run_alphapulse(&["config", "check"], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
}

#[test]
fn every_compose_environment_variable_of_the_engine_image_is_one_it_reads() {
    let doc = compose();
    let mut names = BTreeSet::new();
    for name in COMPOSE_ALPHAPULSE_SERVICES {
        names.extend(compose_env(&doc["services"][name], name).into_keys());
    }
    assert_engine_reads(&names, "scripts/deploy/compose.yaml");
}

#[test]
fn the_seccomp_profile_allows_io_uring_and_keeps_denying_by_default() {
    let profile: Value =
        serde_json::from_str(&read(&deploy_dir().join("seccomp-io-uring.json"))).unwrap();
    assert_ne!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    let rules = profile["syscalls"].as_array().expect("syscalls");
    let io_uring = ["io_uring_setup", "io_uring_enter", "io_uring_register"];
    let names = |r: &Value| -> Vec<String> {
        r["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| str_of(n, "name").to_owned())
            .collect()
    };
    let unconditional = |r: &Value| {
        r["action"] == "SCMP_ACT_ALLOW"
            && r["args"].as_array().is_none_or(|a| a.is_empty())
            && r["includes"].as_object().is_none_or(|o| o.is_empty())
            && r["excludes"].as_object().is_none_or(|o| o.is_empty())
    };
    for call in io_uring
        .iter()
        .chain(&["read", "write", "mmap", "clone", "exit_group"])
    {
        assert!(
            rules
                .iter()
                .any(|r| unconditional(r) && names(r).iter().any(|n| n == call)),
            "{call} is not allowed"
        );
    }
    for r in rules.iter().filter(|r| r["action"] != "SCMP_ACT_ALLOW") {
        for call in io_uring {
            assert!(!names(r).iter().any(|n| n == call), "a rule denies {call}");
        }
    }
}

/// A Python interpreter with the libseccomp bindings, for seccomp-run.py.
fn python_with_seccomp() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import seccomp"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Runs the binary under `profile` (seccomp-run.py); stops it after `limit`. Output goes
/// to files, so a chatty child never blocks on a full pipe.
fn run_under_profile(python: &str, profile: &Path, args: &[&str], limit: Duration) -> Output {
    let dir = TempDir::new("seccomp");
    let (out_path, err_path) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let child = Command::new(python)
        .arg(deploy_dir().join("seccomp-run.py"))
        .arg(profile)
        .arg(BIN)
        .args(args)
        .current_dir(&dir.0)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ALPHAPULSE_PIN_CORES", "false")
        .env("DASHBOARD_ADDR", "127.0.0.1:0")
        // Nothing listens there: `run` fails its connections and keeps retrying.
        .env("BINANCE_WS_URL", "ws://127.0.0.1:9")
        .env("BINANCE_REST_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("python runs seccomp-run.py");
    let mut guard = support::ChildGuard(child);
    let mut status = None;
    support::wait_until(limit, || {
        status = guard.0.try_wait().ok().flatten();
        status.is_some()
    });
    let status = status.unwrap_or_else(|| {
        let _ = guard.0.kill();
        guard.0.wait().expect("the child is reaped")
    });
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

#[test]
fn the_engine_runs_under_the_seccomp_profile_and_not_without_its_io_uring_rule() {
    let Some(python) = python_with_seccomp() else {
        eprintln!(
            "skipped: no Python with the libseccomp bindings (python3-seccomp; scripts/setup.sh installs it)"
        );
        return;
    };
    let _serial = support::serial();
    let profile_path = deploy_dir().join("seccomp-io-uring.json");

    // The whole engine, the simulator and the dashboard run under the profile.
    let out = run_under_profile(
        python,
        &profile_path,
        &["demo", "--seconds", "3"],
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("| ready"),
        "the feed never became ready:\n{stdout}"
    );

    // The same profile without its io_uring rule stops the engine at its host check.
    let mut profile: Value = serde_json::from_str(&read(&profile_path)).unwrap();
    let rules = profile["syscalls"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|r| !r["names"].to_string().contains("io_uring_setup"));
    assert_eq!(rules.len(), before - 1);
    let dir = TempDir::new("profile");
    let stock = dir.0.join("without-io-uring.json");
    std::fs::write(&stock, profile.to_string()).unwrap();
    let out = run_under_profile(python, &stock, &["run"], Duration::from_secs(20));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("io_uring_setup"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Prometheus and Grafana

/// Checks a Prometheus configuration with promtool. `syntax_only` skips the files it
/// names (credentials that exist only where it runs). Debian's promtool is built without
/// Kubernetes discovery: then the check runs on a copy whose kubernetes_sd_configs are
/// static targets, so everything else is still checked.
fn promtool_check_config(path: &Path, syntax_only: bool) {
    let dir = TempDir::new("promtool");
    let mut config = yaml_doc(path);
    let first = promtool_config_run(&dir, &config, syntax_only);
    let Some(out) = first else { return };
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() {
        return;
    }
    assert!(
        report.contains("field kubernetes_sd_configs not found"),
        "{}: {report}",
        path.display()
    );
    eprintln!(
        "this promtool has no Kubernetes discovery: checking {} with static targets",
        path.display()
    );
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        let job = job.as_object_mut().unwrap();
        if job.remove("kubernetes_sd_configs").is_some() {
            job.insert(
                "static_configs".into(),
                serde_json::json!([{"targets": ["pod.invalid:8000"]}]),
            );
        }
    }
    let out = promtool_config_run(&dir, &config, syntax_only).unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        path.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn promtool_config_run(dir: &TempDir, config: &Value, syntax_only: bool) -> Option<Output> {
    let file = dir.0.join("prometheus.yml");
    std::fs::write(&file, serde_norway::to_string(config).unwrap()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let mut args = vec!["check", "config"];
    if syntax_only {
        args.push("--syntax-only");
    }
    args.push(&file);
    promtool(&args)
}

#[test]
fn the_prometheus_configurations_pass_promtool_and_point_at_the_engine() {
    let dir = deploy_dir().join("prometheus");
    let static_config = dir.join("prometheus.yml");
    promtool_passes(&["check", "config", static_config.to_str().unwrap()]);
    promtool_check_config(&dir.join("prometheus-kubernetes.yml"), true);

    // The static job scrapes compose's engine on its dashboard port.
    let doc = yaml_doc(&static_config);
    let job = &doc["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    let engine_env = compose_env(&compose()["services"]["engine"], "engine");
    let port = port_of(&engine_env["DASHBOARD_ADDR"]);
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        format!("engine:{port}")
    );

    // The Kubernetes job keeps the pods the StatefulSet annotates and authenticates
    // with the Secret's token.
    let doc = yaml_doc(&dir.join("prometheus-kubernetes.yml"));
    let job = &doc["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let relabels = serde_json::to_string(&job["relabel_configs"]).unwrap();
    for annotation in ["scrape", "port", "path"] {
        assert!(
            relabels.contains(&format!(
                "__meta_kubernetes_pod_annotation_prometheus_io_{annotation}"
            )),
            "{annotation}"
        );
    }
    let token_file = str_of(
        &job["authorization"]["credentials_file"],
        "credentials_file",
    );
    assert!(token_file.ends_with("/DASHBOARD_TOKEN"), "{token_file}");
    assert!(k8s("secret.template.yaml")["stringData"]["DASHBOARD_TOKEN"].is_string());
}

/// (alert name, expression) of every rule of `prometheus/alerts.yml`.
fn alert_rules() -> Vec<(String, String)> {
    let doc = yaml_doc(&deploy_dir().join("prometheus/alerts.yml"));
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            out.push((
                str_of(&rule["alert"], "alert").to_owned(),
                str_of(&rule["expr"], "expr").to_owned(),
            ));
        }
    }
    out
}

/// Series Prometheus makes itself for every target, not the engine's: alert rules may
/// use them.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests_and_are_loaded() {
    let dir = deploy_dir().join("prometheus");
    let rules = dir.join("alerts.yml");
    let doc = yaml_doc(&rules);
    let mut names = BTreeSet::new();
    for rule in doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let name = str_of(&rule["alert"], "alert");
        assert!(names.insert(name.to_owned()), "{name} twice");
        assert!(rule["for"].is_string(), "{name}: no for:");
        let severity = str_of(&rule["labels"]["severity"], "severity");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity}"
        );
        for a in ["summary", "description"] {
            assert!(
                !str_of(&rule["annotations"][a], a).trim().is_empty(),
                "{name}: {a}"
            );
        }
    }
    // The issue's alerts are there.
    for name in [
        "AlphaPulseFeedDown",
        "AlphaPulseNotReady",
        "AlphaPulseNoClosedCandle",
        "AlphaPulseIncomplete",
        "AlphaPulseSpoolGrowing",
        "AlphaPulseRingNearFull",
        "AlphaPulseSlowClientsDropped",
        "AlphaPulseRestBlocked",
    ] {
        assert!(names.contains(name), "no {name}");
    }
    // Every alert has a unit test, which fires it.
    let tests = yaml_doc(&dir.join("alerts.test.yml"));
    assert_eq!(tests["rule_files"][0], "alerts.yml");
    let tested: BTreeSet<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|t| t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|t| str_of(&t["alertname"], "alertname").to_owned())
        .collect();
    assert_eq!(
        tested, names,
        "alerts.test.yml fires every alert once at least"
    );
    promtool_passes(&["check", "rules", rules.to_str().unwrap()]);
    let test_file = dir.join("alerts.test.yml");
    promtool_passes(&["test", "rules", test_file.to_str().unwrap()]);
    // Both Prometheus configurations load it, and compose mounts it beside its own.
    for config in ["prometheus.yml", "prometheus-kubernetes.yml"] {
        assert_eq!(
            yaml_doc(&dir.join(config))["rule_files"],
            serde_json::json!(["alerts.yml"]),
            "{config}"
        );
    }
    let mounts = serde_json::to_string(&compose()["services"]["prometheus"]["volumes"]).unwrap();
    assert!(
        mounts.contains("./prometheus/alerts.yml:/etc/prometheus/alerts.yml"),
        "{mounts}"
    );
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy_dir().join("grafana/alphapulse.json")))
        .expect("the dashboard is JSON")
}

/// (panel title, expression) of every query of the dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                str_of(&panel["title"], "title").to_owned(),
                str_of(&t["expr"], "expr").to_owned(),
            ));
        }
    }
    out
}

/// PromQL words that are not metric names: aggregations (which may take `by (…)` before
/// their parentheses), binary operators and modifiers.
const PROMQL_WORDS: [&str; 24] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "offset",
    "start",
    "end",
    "inf",
    "nan",
];

/// The index just past the string literal that starts at `i` (its quote).
fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    let quote = bytes[i];
    i += 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if bytes[i] == b'\\' && quote != b'`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The index just past the `close` that ends the group opened at `i`, skipping strings
/// inside it (a label value may hold any bracket).
fn skip_group(bytes: &[u8], mut i: usize, close: u8) -> usize {
    i += 1;
    while i < bytes.len() && bytes[i] != close {
        i = match bytes[i] {
            b'"' | b'\'' | b'`' => skip_string(bytes, i),
            _ => i + 1,
        };
    }
    i + 1
}

/// The metric names an expression selects: identifiers that are not functions (followed
/// by '('), keywords, label matchers ({…}), label lists of by/without/on/ignoring (…),
/// ranges ([…]) or strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_next_parens = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(bytes, i),
            b'{' => i = skip_group(bytes, i, b'}'),
            b'[' => i = skip_group(bytes, i, b']'),
            b'(' if skip_next_parens => {
                i = skip_group(bytes, i, b')');
                skip_next_parens = false;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().bytes().next();
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_next_parens = true;
                } else if next == Some(b'(') || PROMQL_WORDS.contains(&lower.as_str()) {
                    // A function or aggregation, or a keyword.
                } else {
                    names.insert(word.to_owned());
                }
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_metric_name_scanner_finds_selectors_only() {
    let names = metric_names(
        r#"sum by (stage) (rate(a_sum{job=~"$job",x="y{z}"}[$__rate_interval])) / ignoring(le) b_count offset 5m + 1e3 * max without (i) (c:rule)"#,
    );
    let expected: BTreeSet<String> = ["a_sum", "b_count", "c:rule"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn every_dashboard_panel_has_a_datasource_and_a_query_that_promtool_parses() {
    let d = dashboard();
    assert_eq!(d["uid"], "alphapulse-engine");
    let variables: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(&v["name"], "variable"))
        .collect();
    assert!(variables.contains("datasource"), "{variables:?}");
    let mut ids = BTreeSet::new();
    let mut panels = 0;
    for panel in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "duplicate id"
        );
        let pos = &panel["gridPos"];
        assert!(pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24);
        if panel["type"] == "row" {
            continue;
        }
        panels += 1;
        let title = str_of(&panel["title"], "title");
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert!(!str_of(&t["expr"], "expr").trim().is_empty(), "{title}");
            assert_eq!(t["datasource"], panel["datasource"], "{title}");
            assert!(ref_ids.insert(str_of(&t["refId"], "refId")), "{title}");
        }
        // Grafana variables in expressions are ones the dashboard defines.
        for t in targets {
            let expr = str_of(&t["expr"], "expr");
            for var in expr.split('$').skip(1) {
                let name: String = var
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || variables.contains(name.as_str()),
                    "{title}: ${name} is not a dashboard variable"
                );
            }
        }
    }
    assert!(panels >= 20, "{panels} panels");

    // promtool parses every expression (Grafana's range variables made concrete).
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = TempDir::new("rules");
    let path = file.0.join("dashboard-rules.yml");
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&path, serde_norway::to_string(&doc).unwrap()).unwrap();
    promtool_passes(&["check", "rules", path.to_str().unwrap()]);
}

#[test]
fn grafana_provisioning_loads_the_dashboard_from_where_compose_mounts_it() {
    let dir = deploy_dir().join("grafana/provisioning");
    let ds = yaml_doc(&dir.join("datasources/prometheus.yaml"));
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let prom_port = compose()["services"]["prometheus"]["ports"][0]
        .as_str()
        .map(port_of)
        .unwrap();
    assert_eq!(
        ds["datasources"][0]["url"],
        format!("http://prometheus:{prom_port}")
    );
    let providers = yaml_doc(&dir.join("dashboards/alphapulse.yaml"));
    let folder = str_of(&providers["providers"][0]["options"]["path"], "path");
    let mounts: Vec<String> = compose()["services"]["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "volume").to_owned())
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./grafana/alphapulse.json:")
                && m.contains(&format!(":{folder}/alphapulse.json"))),
        "{mounts:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Against a running engine

/// Metric names in a Prometheus text exposition: each family from its `# TYPE` line,
/// with the sample names of summaries and histograms.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        let suffixes: &[&str] = match kind {
            "summary" => &["_sum", "_count"],
            "histogram" => &["_sum", "_count", "_bucket"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

#[test]
fn probes_healthchecks_dashboard_and_docs_match_a_running_engine() {
    let run = support::start(
        support::sim_config(&["BTCUSDT", "ETHUSDT"]),
        |_| {},
        &["BTCUSDT", "ETHUSDT"],
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();

    // The Kubernetes probes' paths answer 200 once the feed is live.
    let engine = k8s("statefulset.yaml");
    let container = engine_container(&engine);
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = str_of(&container[probe]["httpGet"]["path"], "probe path");
        assert!(
            support::wait_until(Duration::from_secs(20), || support::http_get(addr, path).0
                == 200),
            "{probe} {path} never answered 200"
        );
    }

    // The image's and compose's healthchecks, through the entrypoint.
    let addr_text = addr.to_string();
    let out = run_entrypoint(&["healthcheck", "/readyz", &addr_text], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_entrypoint(
        &["healthcheck", "/healthz"],
        &[("DASHBOARD_ADDR", &addr_text)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_entrypoint(&["healthcheck", "/no-such-path", &addr_text], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    // Every metric the dashboard queries is exported (or pending, see the constant).
    // Process memory appears once the collector has sampled /proc.
    let mut body = String::new();
    let sampled = support::wait_until(Duration::from_secs(10), || {
        body = support::http_get(addr, "/metrics").1;
        body.contains("\nprocess_resident_memory_bytes ")
    });
    assert!(sampled, "no process_resident_memory_bytes in:\n{body}");
    let exported = exported_names(&body);
    assert!(exported.contains("alphapulse_stage_latency_seconds_count"));
    let mut used = BTreeSet::new();
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "panel '{title}' queries {name}, which /metrics does not export"
            );
            used.insert(name);
        }
    }
    for name in COMPLETENESS_METRICS {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    // Every metric an alert rule reads is exported (Prometheus' own `up` aside).
    for (alert, expr) in alert_rules() {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name) || PROMETHEUS_SERIES.contains(&name.as_str()),
                "alert {alert} reads {name}, which /metrics does not export"
            );
        }
    }
    // The families a dashboard must show (issue: latency, throughput, rings, spool,
    // clients, reconnects) are on it.
    for name in [
        "alphapulse_stage_latency_seconds_bucket",
        "alphapulse_messages_received_total",
        "alphapulse_candles_closed_total",
        "alphapulse_ring_depth",
        "alphapulse_ring_capacity",
        "alphapulse_spool_rows",
        "alphapulse_spool_bytes",
        "alphapulse_dashboard_clients",
        "alphapulse_reconnects_total",
    ] {
        assert!(exported.contains(name), "/metrics lacks {name}");
        assert!(used.contains(name), "the dashboard does not show {name}");
    }

    // docs/operations.md explains every exported family.
    let docs = read(&root().join("docs/operations.md"));
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for family in families {
        assert!(
            docs.contains(&format!("`{family}`")),
            "docs/operations.md does not explain {family}"
        );
    }
}
