//! `swarm registry` on the machines of one LAN (network namespaces on a bridge), as a cluster
//! runs it: Debian's `docker-registry` is the upstream on machine `u`, behind a 100 Mbit/s
//! link; `swarm tracker` runs on `t`; every host runs `swarm registry --upstream … --tracker …`
//! with its defaults and pulls an image of three layers with `skopeo` (a real client) through
//! `127.0.0.1:5050`, all hosts at once. The same pulls straight from the upstream come first, for
//! the times beside each other. The upstream's access log counts the blob reads: one per blob,
//! however many hosts pulled. Needs root (CI runs as root); says so and passes without it.
//! `SWARM_REGISTRY_HOSTS` sets the number of hosts (default 10); `just registry-mirror` runs
//! it with bigger layers.

use std::path::Path;
use std::thread;
use std::time::Instant;

use crate::common::*;
use crate::lan::{bridge, lan_if_root, link, printed_from, Lan};

/// The hosts' machine names (the first `SWARM_REGISTRY_HOSTS` of them are used).
const HOSTS: [&str; 20] = [
    "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "h10", "h11", "h12", "h13", "h14", "h15", "h16", "h17",
    "h18", "h19", "h20",
];
/// The upstream registry's address on the LAN.
const UPSTREAM: &str = "10.81.0.2:5000";

/// The upstream `u` (10.81.0.2, its link capped at 100 Mbit/s), the tracker `t` (10.81.0.3) and
/// `hosts` (10.81.0.11 on), each linked to a bridge on the switch `s`.
fn cluster(name: &str, hosts: &[&'static str]) -> Lan {
    let mut machines = vec!["s", "u", "t"];
    machines.extend_from_slice(hosts);
    let mut script = Vec::new();
    let mut ports = Vec::new();
    let mut at = |machine: &'static str, addr: String| {
        script.push(link(
            machine,
            &format!("e{machine}"),
            &addr,
            "s",
            &format!("s{machine}"),
            "",
        ));
        ports.push(format!("s{machine}"));
    };
    at("u", "10.81.0.2/24".into());
    at("t", "10.81.0.3/24".into());
    for (i, host) in hosts.iter().enumerate() {
        at(host, format!("10.81.0.{}/24", 11 + i));
    }
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    script.extend(bridge("s", "br", "10.81.0.1/24", &ports));
    script.push("ip netns exec {n}-u tc qdisc add dev {n}-eu root tbf rate 100mbit burst 64kb latency 50ms".into());
    Lan::build(name, &machines, &script)
}

#[test]
fn an_image_pulled_on_every_host_at_once_reads_each_layer_from_the_upstream_once() {
    let hosts: usize = std::env::var("SWARM_REGISTRY_HOSTS").map_or(10, |n| n.parse().unwrap());
    let layer_mib: usize = std::env::var("SWARM_REGISTRY_LAYER_MIB").map_or(4, |n| n.parse().unwrap());
    let hosts = &HOSTS[..hosts.min(HOSTS.len())];
    let Some(lan) = lan_if_root("swr", |n| cluster(n, hosts)) else {
        return;
    };
    install_if_missing("skopeo", "skopeo");
    install_if_missing("docker-registry", "docker-registry");
    let tmp = tempfile::tempdir().unwrap();
    let home = |machine: &str| tmp.path().join(machine);

    // The upstream, with an image of three layers pushed to it.
    // Its access log goes to standard output.
    let upstream_log = home("u").join("access.log");
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {UPSTREAM}\n",
        s(&home("u").join("data"))
    );
    write(home("u").join("config.yml"), config.as_bytes());
    let _upstream = lan.start(
        "u",
        &home("u"),
        "exec docker-registry serve config.yml >access.log 2>&1",
        &tmp.path().join("upstream.log"),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/end_to_end/registry/make_image.py");
    let size = (layer_mib << 20).to_string();
    lan.run_ok(
        "u",
        &home("u"),
        &format!("python3 {} image v1 3 {size} >/dev/null", s(&script)),
        "image made",
    );
    wait_until("the upstream to answer", || {
        lan.machine("u", &home("u"), &format!("skopeo --insecure-policy inspect --tls-verify=false docker://{UPSTREAM}/none:x 2>&1 | grep -q -v 'connection refused'"))
            .status()
            .is_ok_and(|s| s.success())
    });
    lan.run_ok(
        "u",
        &home("u"),
        &format!(
            "skopeo --insecure-policy copy -q --dest-tls-verify=false oci:image:v1 docker://{UPSTREAM}/test/app:v1"
        ),
        "image pushed",
    );

    // The same image pulled by every host straight from the upstream, all at once.
    let direct = pull_everywhere(&lan, hosts, &home, UPSTREAM, "direct");

    // Then through the mirror on every host.
    let _tracker = lan.start("t", &home("t"), "exec swarm tracker", &tmp.path().join("tracker.log"));
    // A liar on the tracker's machine shares junk under the name of the largest layer: every
    // mirror that fetches it finds it does not match the digest, drops it, and goes on.
    let reference = blobs_of(&home(hosts[0]).join("direct"));
    let (layer, real) = reference.iter().max_by_key(|(_, data)| data.len()).unwrap();
    write(
        home("t").join("lies").join(format!("sha256:{layer}")),
        &content(real.len(), 99),
    );
    let liar = lan.start(
        "t",
        &home("t"),
        &format!("exec swarm seed lies/sha256:{layer} --tracker 127.0.0.1:7070"),
        &tmp.path().join("liar.log"),
    );
    printed_from(&liar, "swarm fetch ");
    let mirrors: Vec<Proc> = hosts
        .iter()
        .map(|host| {
            let line = format!("exec swarm registry --upstream http://{UPSTREAM} --tracker 10.81.0.3:7070");
            let log = tmp.path().join(format!("mirror-{host}.log"));
            let mirror = lan.start(host, &home(host), &line, &log);
            printed_from(&mirror, "127.0.0.1:5050");
            mirror
        })
        .collect();
    let read_before = std::fs::read_to_string(&upstream_log).unwrap().len();
    let mirrored = pull_everywhere(&lan, hosts, &home, "127.0.0.1:5050", "mirrored");
    println!(
        "{} hosts pulled {} MiB each: straight from the upstream in {direct:.2?}, through swarm registry in {mirrored:.2?}",
        hosts.len(),
        3 * layer_mib
    );

    // Every host holds the same blobs, and the upstream gave out each blob once.
    assert_eq!(reference.len(), 5, "3 layers, a config and a manifest");
    for host in hosts {
        assert!(
            blobs_of(&home(host).join("mirrored")) == reference,
            "{host}'s pull through the mirror differs"
        );
    }
    let saw_the_lie = hosts.iter().any(|host| {
        let log = std::fs::read_to_string(tmp.path().join(format!("mirror-{host}.log"))).unwrap();
        log.contains("holds other content")
    });
    assert!(
        saw_the_lie,
        "no mirror fetched the liar's copy: the test did not test it"
    );
    let log = std::fs::read_to_string(&upstream_log).unwrap();
    let mirrored_reads = &log[read_before..];
    // The image's manifest is among the blobs a pull writes, but is asked for by tag: the other
    // four (three layers and the config) are what the upstream gives out as blobs.
    let reads: Vec<usize> = reference
        .iter()
        .map(|(digest, _)| {
            let asked = format!("\"GET /v2/test/app/blobs/sha256:{digest} HTTP/1.1\" 200");
            mirrored_reads.matches(&asked).count()
        })
        .collect();
    assert_eq!(
        reads.iter().filter(|&&n| n == 1).count(),
        4,
        "reads per blob: {reads:?} in {mirrored_reads}"
    );
    let blob_reads = mirrored_reads.matches("\"GET /v2/test/app/blobs/").count();
    assert_eq!(
        blob_reads, 4,
        "three layers and a config, each read once: {mirrored_reads}"
    );

    // Hostile or malformed names are refused with the distribution API's errors, never
    // passed on to the upstream or the disk.
    let status = |path: &str| -> String {
        let ask = format!(
            "python3 -c \"import urllib.request as u, urllib.error as e\ntry: print(u.urlopen('http://127.0.0.1:5050{path}').status)\nexcept e.HTTPError as x: print(x.code, x.read().decode())\""
        );
        lan.run_ok(hosts[0], &home(hosts[0]), &ask, path)
    };
    assert!(status("/v2/").starts_with("200"));
    let bad_digest = status("/v2/test/app/blobs/sha256:..%2F..%2Fetc%2Fpasswd");
    assert!(
        bad_digest.starts_with("400") && bad_digest.contains("DIGEST_INVALID"),
        "{bad_digest}"
    );
    let bad_name = status(&format!("/v2/Test/App/blobs/sha256:{layer}"));
    assert!(
        bad_name.starts_with("404") && bad_name.contains("NAME_INVALID"),
        "{bad_name}"
    );
    let unknown = status("/v2/test/app/manifests/nope");
    assert!(
        unknown.starts_with("404") && unknown.contains("MANIFEST_UNKNOWN"),
        "{unknown}"
    );
    drop(mirrors);
}

/// The blobs of the OCI layout in `dir`, by hex digest.
fn blobs_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect();
    found.sort();
    found
}

/// Pulls `test/app:v1` from `registry` on every host at once into `DIR` of its home; how long
/// all of them took.
fn pull_everywhere(
    lan: &Lan,
    hosts: &[&'static str],
    home: &dyn Fn(&str) -> std::path::PathBuf,
    registry: &str,
    dir: &str,
) -> std::time::Duration {
    let started = Instant::now();
    thread::scope(|scope| {
        for host in hosts {
            let line = format!(
                "skopeo --insecure-policy copy -q --src-tls-verify=false docker://{registry}/test/app:v1 oci:{dir}:v1"
            );
            let home = home(host);
            // No time limit of its own (the bigger variants' direct pulls take minutes).
            scope.spawn(move || {
                let pulled = lan.machine(host, &home, &line).output().unwrap();
                let said = String::from_utf8_lossy(&pulled.stderr);
                assert!(pulled.status.success(), "{host} could not pull ({dir}): {said}");
            });
        }
    });
    started.elapsed()
}
