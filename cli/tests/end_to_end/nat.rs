//! The README's separate-tracker flow across NATs: a tracker on a public segment, the seeder
//! behind one router and the fetcher behind another, each router of a kind — no NAT, a home
//! router's NAT (MASQUERADE: one mapping per socket, replies let in only from where it sent,
//! nothing new let in from outside), a symmetric NAT (a new port for every destination), or a
//! symmetric NAT whose router maps ports on request (UPnP IGD or NAT-PMP, Debian's miniupnpd,
//! installed when missing).
//! `swarm tracker` on T, `swarm seed ./videos --tracker …` on A as T printed it, the command A
//! printed pasted on B. Every pair fetches; how the bytes went is counted on A's router.
//! Needs root (CI runs as root); says so and passes without it.
//!
//! The public segment is 7.7.7.0/24, not a documentation range: miniupnpd, the router that maps
//! ports on request, refuses to map on a reserved address. The namespaces have no route out.
//!
//! `SWARM_NAT_MB` sizes the file (2 MB here; `just nat-matrix` runs a bigger one).

use std::time::Instant;

use super::lan::{bridge, lan_if_root, link, printed_from, Lan};
use crate::common::*;

/// What stands between a machine and the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    /// A plain router: the machine's address is public.
    Public,
    /// A home router's NAT (MASQUERADE, and a firewall that lets nothing new in).
    Nat,
    /// A NAT that maps every destination to a new port (MASQUERADE --random-fully).
    Symmetric,
    /// A symmetric NAT whose router maps ports on request (UPnP IGD; miniupnpd).
    SymmetricUpnp,
    /// A symmetric NAT whose router maps ports on request by NAT-PMP only (miniupnpd).
    SymmetricPmp,
}

impl Router {
    fn name(self) -> &'static str {
        match self {
            Router::Public => "public",
            Router::Nat => "NAT",
            Router::Symmetric => "symmetric NAT",
            Router::SymmetricUpnp => "symmetric NAT, UPnP",
            Router::SymmetricPmp => "symmetric NAT, NAT-PMP",
        }
    }

    /// The lines that make router `r` (public side `wan`, inside `lan` with `inside`) this kind.
    fn script(self, r: &str, wan: &str, lan: &str, inside: &str) -> Vec<String> {
        let on = format!("ip netns exec {{n}}-{r} iptables");
        let mut lines = vec![format!("ip netns exec {{n}}-{r} sysctl -q -w net.ipv4.ip_forward=1")];
        let masquerade = match self {
            Router::Public => {
                // The tracker's machine routes to the inside through this router.
                lines.push(format!("ip -n {{n}}-t route add {inside} via {}", wan_ip(r)));
                return lines;
            }
            Router::Nat => "MASQUERADE",
            Router::Symmetric | Router::SymmetricUpnp | Router::SymmetricPmp => "MASQUERADE --random-fully",
        };
        lines.extend([
            format!("{on} -t nat -A POSTROUTING -o {{n}}-{wan} -j {masquerade}"),
            format!("{on} -A INPUT -i {{n}}-{wan} -m conntrack --ctstate NEW -j DROP"),
            // What the router was asked to forward passes its firewall.
            format!("{on} -A FORWARD -i {{n}}-{wan} -m conntrack --ctstate DNAT -j ACCEPT"),
            format!("{on} -A FORWARD -i {{n}}-{wan} -m conntrack --ctstate NEW -j DROP"),
        ]);
        match self {
            Router::SymmetricUpnp => lines.extend(port_mapper(r, wan, lan, inside, true)),
            Router::SymmetricPmp => lines.extend(port_mapper(r, wan, lan, inside, false)),
            _ => {}
        }
        lines
    }
}

/// The lines that start miniupnpd on router `r`, mapping ports of machines in `inside` on its
/// `wan` side when asked on its `lan` side (by NAT-PMP, and by UPnP IGD if `upnp`); its rules
/// go in nftables chains of their own.
fn port_mapper(r: &str, wan: &str, lan: &str, inside: &str, upnp: bool) -> Vec<String> {
    let conf = format!("/tmp/{{n}}-{r}-miniupnpd.conf");
    let settings = [
        format!("ext_ifname={{n}}-{wan}"),
        format!("listening_ip={{n}}-{lan}"),
        "http_port=0".to_owned(),
        format!("enable_upnp={}", if upnp { "yes" } else { "no" }),
        "enable_natpmp=yes".to_owned(),
        "secure_mode=yes".to_owned(),
        "system_uptime=yes".to_owned(),
        "upnp_table_name=filter".to_owned(),
        "upnp_nat_table_name=filter".to_owned(),
        "upnp_forward_chain=forwardUPnP".to_owned(),
        "upnp_nat_chain=UPnP".to_owned(),
        "upnp_nat_postrouting_chain=UPnP-Postrouting".to_owned(),
        "uuid=4364b624-a9bb-4d1d-9aaa-5a9d2998bc2f".to_owned(),
        format!("allow 1024-65535 {inside} 1024-65535"),
        "deny 0-65535 0.0.0.0/0 0-65535".to_owned(),
    ];
    let chains = [
        "table inet filter {",
        "chain forward { type filter hook forward priority 0; policy accept; jump forwardUPnP; }",
        "chain forwardUPnP { }",
        "chain prerouting { type nat hook prerouting priority -100; policy accept; jump UPnP; }",
        "chain UPnP { }",
        "chain postrouting { type nat hook postrouting priority 100; policy accept; jump UPnP-Postrouting; }",
        "chain UPnP-Postrouting { }",
        "}",
    ];
    let lines = |lines: &[String]| {
        lines
            .iter()
            .map(|line| format!("'{line}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        format!("printf '%s\\n' {} > {conf}", lines(&settings)),
        format!(
            "printf '%s\\n' {} | ip netns exec {{n}}-{r} nft -f -",
            lines(&chains.map(str::to_owned))
        ),
        format!("ip netns exec {{n}}-{r} miniupnpd -f {conf} -P /tmp/{{n}}-{r}-miniupnpd.pid"),
    ]
}

impl Router {
    /// Installs what a router of this kind runs, if missing (Debian's packages).
    fn install(self) {
        if matches!(self, Router::SymmetricUpnp | Router::SymmetricPmp) {
            install_if_missing("nft", "nftables");
            install_if_missing("miniupnpd", "miniupnpd");
        }
    }
}

fn wan_ip(router: &str) -> &'static str {
    if router == "r" {
        "7.7.7.1"
    } else {
        "7.7.7.2"
    }
}

/// T (7.7.7.10) on a public bridge with router R (7.7.7.1, A 10.1.0.2 behind it) and
/// router S (7.7.7.2, B 10.2.0.2 behind it); B's router counts what reaches B straight
/// from A and what through T.
fn behind_routers(name: &str, a: Router, b: Router) -> Lan {
    network(name, a, b, false)
}

/// [`behind_routers`], with `x` (7.7.7.20) on the public bridge too when `relay_host` (a host
/// for `swarm relay`; B's router counts what comes from it as well).
fn network(name: &str, a: Router, b: Router, relay_host: bool) -> Lan {
    let mut script = vec![
        link("r", "rw", "7.7.7.1/24", "t", "tr", ""),
        link("s", "sw", "7.7.7.2/24", "t", "ts", ""),
    ];
    script.extend(bridge("t", "br", "7.7.7.10/24", &["tr", "ts"]));
    script.extend([
        link("a", "ea", "10.1.0.2/24", "r", "ra", "10.1.0.1/24"),
        link("b", "eb", "10.2.0.2/24", "s", "sb", "10.2.0.1/24"),
        "ip -n {n}-a route add default via 10.1.0.1".to_owned(),
        "ip -n {n}-b route add default via 10.2.0.1".to_owned(),
    ]);
    script.extend(a.script("r", "rw", "ra", "10.1.0.0/24"));
    script.extend(b.script("s", "sw", "sb", "10.2.0.0/24"));
    if a == Router::Public {
        script.push("ip -n {n}-s route add 10.1.0.0/24 via 7.7.7.1".to_owned());
    }
    if b == Router::Public {
        script.push("ip -n {n}-r route add 10.2.0.0/24 via 7.7.7.2".to_owned());
    }
    let mut machines = vec!["a", "b", "r", "s", "t"];
    if relay_host {
        script.push(link("x", "ex", "7.7.7.20/24", "t", "tx", ""));
        script.push("ip -n {n}-t link set {n}-tx master {n}-br".to_owned());
        machines.push("x");
    }
    // What reaches B, counted on its router: from A (its router's address, or its own when
    // public), from T (the tracker: its answers, and what it relays) and from X.
    for from in ["7.7.7.1", "10.1.0.2", "7.7.7.10", "7.7.7.20"] {
        script.push(format!(
            "ip netns exec {{n}}-s iptables -A FORWARD -o {{n}}-sb -s {from}"
        ));
    }
    Lan::build(name, &machines, &script)
}

/// Bytes B's router passed on to B from A, and from T.
fn counted(lan: &Lan) -> (u64, u64) {
    (
        counted_from(lan, &["7.7.7.1", "10.1.0.2"]),
        counted_from(lan, &["7.7.7.10"]),
    )
}

/// Bytes B's router passed on to B from any of `sources`.
fn counted_from(lan: &Lan, sources: &[&str]) -> u64 {
    let out = lan
        .machine("s", &std::env::temp_dir(), "iptables -L FORWARD -v -x -n")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let bytes_from = |from: &str| -> u64 {
        listing
            .lines()
            .filter(|line| line.split_whitespace().nth(6) == Some(from))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    sources.iter().map(|from| bytes_from(from)).sum()
}

/// How one pair went.
struct Crossed {
    seconds: f64,
    direct: u64,
    via_tracker: u64,
    /// The rate B's summary gave for the transfer itself ("12.3 MB/s").
    rate: String,
    /// How `swarm status` on A says its uploads reached it.
    paths: Vec<String>,
    /// CPU time the tracker spent while B fetched (relaying, for a relayed pair).
    tracker_cpu: f64,
}

/// CPU time (user and system) process `pid` has spent, in seconds (`ip netns exec` and
/// `sh -c exec` both exec, so the child's pid is the tracker's).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// `swarm tracker TRACKER_ARGS` on T, then `swarm seed ./videos --tracker … SEED_ARGS` on A as
/// T printed it (homes under `tmp`): both running, and the command A printed.
fn tracker_and_seeder(lan: &Lan, tmp: &std::path::Path, tracker_args: &str, seed_args: &str) -> (Proc, Proc, String) {
    let home = |name: &str| tmp.join(name);
    let tracker = lan.start(
        "t",
        &home("t"),
        &format!("exec swarm tracker {tracker_args}"),
        &home("tracker.log"),
    );
    let tracker_flag = printed_from(&tracker, "--tracker ");
    let seed = format!("exec swarm seed ./videos {tracker_flag} {seed_args}");
    let seeder = lan.start("a", &home("a"), &seed, &home("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    (tracker, seeder, printed)
}

/// The flow on machines behind `a` and `b`, with a file of `size` bytes.
fn fetch_across(a: Router, b: Router, size: usize, prefix: &str) -> Option<Crossed> {
    a.install();
    b.install();
    let lan = lan_if_root(prefix, |n| behind_routers(n, a, b))?;
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let film = content(size, 9);
    write(home("a").join("videos/film.mkv"), &film);

    let (tracker, _seeder, printed) = tracker_and_seeder(&lan, tmp.path(), "", "");

    let cpu_before = cpu_seconds(tracker.child.id());
    let started = Instant::now();
    let what = format!("B ({}) fetched from A ({})", b.name(), a.name());
    let summary = lan.run_ok("b", &home("b"), &printed, &what);
    let seconds = started.elapsed().as_secs_f64();
    // "./videos  1 file(s), 1.9 MiB in 0.03 s (61.8 MB/s) from 1 peer(s), verified"
    let rate = summary
        .rsplit_once(" s (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("?".to_owned(), |(rate, _)| rate.to_owned());
    assert_eq!(std::fs::read(home("b").join("videos/film.mkv")).unwrap(), film);
    let tracker_cpu = cpu_seconds(tracker.child.id()) - cpu_before;
    let (direct, via_tracker) = counted(&lan);
    // How the seeder says B came in.
    let status = lan.machine("a", &home("a"), "swarm status --json").output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("swarm status --json");
    let paths: Vec<String> = status["uploads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["path"].as_str().map(str::to_owned))
        .collect();
    if std::env::var("NAT_DEBUG").is_ok() {
        for log in ["seed.log", "tracker.log"] {
            println!("--- {log}\n{}", std::fs::read_to_string(home(log)).unwrap_or_default());
        }
    }
    Some(Crossed {
        seconds,
        direct,
        via_tracker,
        rate,
        paths,
        tracker_cpu,
    })
}

fn file_size() -> usize {
    let megabytes: usize = std::env::var("SWARM_NAT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    megabytes * 1_000_000
}

/// Every pair of routers: the fetch completes, and the bytes take the path the pair allows:
/// straight to B when either side is public or both are home routers (a punched hole), through
/// the tracker's relay when a symmetric NAT is on either side. Prints the table docs/networking.md shows.
#[test]
fn every_pair_of_routers_fetches_by_the_path_it_allows() {
    use Router::{Nat, Public, Symmetric, SymmetricPmp, SymmetricUpnp};
    let size = file_size();
    let pairs = [
        (Public, Nat, Way::Straight, "direct"),
        (Nat, Public, Way::Straight, "punched"),
        (Nat, Nat, Way::Straight, "punched"),
        (Nat, Symmetric, Way::Relayed, "relayed"),
        (Symmetric, Nat, Way::Relayed, "relayed"),
        (Symmetric, Symmetric, Way::Relayed, "relayed"),
        (SymmetricUpnp, Symmetric, Way::Straight, "direct"),
        (SymmetricPmp, Symmetric, Way::Straight, "direct"),
    ];
    let mut table = vec![
        "| seeder behind | fetcher behind | path | bytes straight from A | through the tracker | paste to done | transfer | tracker CPU |"
            .to_owned(),
        "|---|---|---|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for (n, (a, b, expected, seen_by_a)) in pairs.into_iter().enumerate() {
        let Some(crossed) = fetch_across(a, b, size, &format!("sx{n}")) else {
            return;
        };
        let share = |bytes: u64| format!("{:.0}%", 100.0 * bytes as f64 / size as f64);
        table.push(format!(
            "| {} | {} | {} | {} | {} | {:.2} s | {} | {:.2} s |",
            a.name(),
            b.name(),
            expected.name(),
            share(crossed.direct),
            share(crossed.via_tracker),
            crossed.seconds,
            crossed.rate,
            crossed.tracker_cpu,
        ));
        let took = match expected {
            Way::Straight => crossed.direct,
            Way::Relayed => crossed.via_tracker,
        };
        assert!(
            took * 10 >= size as u64 * 8,
            "{} to {}: only {took} of {size} bytes went {}\n{}",
            a.name(),
            b.name(),
            expected.name(),
            table.join("\n")
        );
        assert!(
            crossed.paths.iter().any(|path| path == seen_by_a),
            "{} to {}: A's status says its uploads came {:?}, not {seen_by_a}",
            a.name(),
            b.name(),
            crossed.paths
        );
    }
    println!("{}", table.join("\n"));
}

/// The path a pair of routers allows.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// Straight from A's router to B's (directly, or through a punched hole).
    Straight,
    /// Through the tracker's relay.
    Relayed,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Straight => "straight",
            Way::Relayed => "relayed",
        }
    }
}

/// Two machines behind one home router (A 10.1.0.2 and B 10.1.0.3 on its LAN), the tracker
/// outside: the tracker sees both at the router's address, so it hands B A's LAN address first
/// and B fetches across the LAN, not through the router (which would have to hairpin).
#[test]
fn two_machines_behind_one_home_router_meet_on_their_lan() {
    let Some(lan) = lan_if_root("swo", |name| {
        let mut script = vec![link("r", "rw", "7.7.7.1/24", "t", "tr", "7.7.7.10/24")];
        script.extend([
            link("a", "ea", "10.1.0.2/24", "r", "ra", ""),
            link("b", "eb", "10.1.0.3/24", "r", "rb", ""),
        ]);
        script.extend(bridge("r", "br", "10.1.0.1/24", &["ra", "rb"]));
        script.extend([
            "ip -n {n}-a route add default via 10.1.0.1".to_owned(),
            "ip -n {n}-b route add default via 10.1.0.1".to_owned(),
        ]);
        script.extend(Router::Nat.script("r", "rw", "br", "10.1.0.0/24"));
        // What comes in from outside, counted on the router.
        script.push("ip netns exec {n}-r iptables -A FORWARD -i {n}-rw".to_owned());
        Lan::build(name, &["a", "b", "r", "t"], &script)
    }) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let size = file_size();
    let film = content(size, 10);
    write(home("a").join("videos/film.mkv"), &film);
    let (_tracker, _seeder, printed) = tracker_and_seeder(&lan, tmp.path(), "", "");
    lan.run_ok("b", &home("b"), &printed, "B fetched from A behind the same router");
    assert_eq!(std::fs::read(home("b").join("videos/film.mkv")).unwrap(), film);
    let out = lan
        .machine("r", &home("r"), "iptables -L FORWARD -v -x -n")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let from_outside: u64 = listing
        .lines()
        .filter(|line| line.split_whitespace().nth(5).is_some_and(|i| i.ends_with("-rw")))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    println!("{from_outside} B came in from outside the router");
    assert!(
        from_outside < size as u64 / 10,
        "{from_outside} B of a {size} B file came in from outside the router"
    );
}

/// A download that had to go through the relay moves to a direct path once one opens: A
/// behind a home router and B behind a symmetric NAT meet only through the tracker's relay
/// (capped at 1 MB/s here); once the relay carries the download, A's router forwards A's port
/// (as a user would, or UPnP), and the fetcher, trying now and then without the relay, moves
/// over: the rest of the file comes straight from A.
#[test]
fn a_relayed_download_moves_to_a_direct_path_once_one_opens() {
    let size = 12_000_000;
    let Some(lan) = lan_if_root("smv", |n| behind_routers(n, Router::Nat, Router::Symmetric)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let film = content(size, 11);
    write(home("a").join("videos/film.mkv"), &film);

    // The seeder on a port of its own, for the forward below.
    let (_tracker, _seeder, printed) = tracker_and_seeder(&lan, tmp.path(), "--relay-rate 1MB", "--listen [::]:7000");
    let started = Instant::now();
    let mut fetch = lan.start("b", &home("b"), &format!("exec {printed} -v"), &home("fetch.log"));
    let said = || std::fs::read_to_string(home("fetch.log")).unwrap_or_default();
    while counted(&lan).1 <= 300_000 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the relay never carried the download:\n{}",
            said()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let relayed_by_then = counted(&lan).1;
    let forward = "iptables -t nat -A PREROUTING -i {n}-rw -p udp --dport 7000 -j DNAT --to-destination 10.1.0.2:7000"
        .replace("{n}", lan.name());
    let done = lan.machine("r", &home("r"), &forward).status().unwrap();
    assert!(done.success(), "{forward}");
    println!(
        "A's port forwarded {:.1?} after the paste, {relayed_by_then} B relayed by then",
        started.elapsed()
    );
    let status = loop {
        if let Some(status) = fetch.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed().as_secs() < 60, "the fetch did not end:\n{}", said());
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "{}", said());
    assert_eq!(std::fs::read(home("b").join("videos/film.mkv")).unwrap(), film);
    let (direct, via_tracker) = counted(&lan);
    println!(
        "done in {:.1?}: {direct} B straight from A, {via_tracker} B through the tracker",
        started.elapsed()
    );
    assert!(said().contains("moved from the relay to a direct path"), "{}", said());
    assert!(
        direct * 10 >= size as u64 * 3,
        "only {direct} of {size} bytes came straight from A after the move:\n{}",
        said()
    );
}

/// A relay on a host of its own: two symmetric NATs, the tracker on T started with `--relay`
/// naming `swarm relay` on X; the bytes reach B from X, none through T, and A's status says
/// relayed.
#[test]
fn a_relay_on_its_own_host_carries_what_the_tracker_would() {
    let size = file_size();
    let Some(lan) = lan_if_root("srx", |n| network(n, Router::Symmetric, Router::Symmetric, true)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let film = content(size, 12);
    write(home("a").join("videos/film.mkv"), &film);

    // The tracker's id first (its key is made at its first start), for the relay's --for.
    let mut first = lan.start("t", &home("t"), "exec swarm tracker", &home("tracker.log"));
    let tracker_id = printed_from(&first, "--tracker ")["--tracker ".len()..]
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let relay = lan.start(
        "x",
        &home("x"),
        &format!("exec swarm relay --for {tracker_id}"),
        &home("relay.log"),
    );
    let relay_flag = printed_from(&relay, "--relay ");
    println!("printed on X: {relay_flag}");
    let (_tracker, _seeder, printed) = tracker_and_seeder(&lan, tmp.path(), &relay_flag, "");

    lan.run_ok("b", &home("b"), &printed, "B fetched through the relay on X");
    assert_eq!(std::fs::read(home("b").join("videos/film.mkv")).unwrap(), film);
    let (from_x, from_t) = (counted_from(&lan, &["7.7.7.20"]), counted_from(&lan, &["7.7.7.10"]));
    println!("{from_x} B reached B from X, {from_t} B from T");
    assert!(
        from_x * 10 >= size as u64 * 8,
        "only {from_x} of {size} bytes through X"
    );
    assert!(
        from_t * 10 < size as u64,
        "{from_t} bytes through T, which should relay nothing"
    );
}
