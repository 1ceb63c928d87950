//! `swarm doctor`: the engine's checks (`swarm_engine::doctor`), one line each, worst last.

use anyhow::Result;
use swarm_engine::doctor::{self, Finding, Verdict};
use swarm_engine::Node;

use crate::args::DoctorArgs;

use super::fetch::target_of;
use super::setup::{node_config, telling_if_slow};

/// `swarm doctor`
pub async fn doctor(args: DoctorArgs) -> Result<()> {
    let mut findings = Vec::new();
    let target = match &args.id {
        Some(id) => Some(target_of(id, &args.tracker, &args.node.state)?),
        None => match target_of("", &args.tracker, &args.node.state) {
            Ok((_, trackers, _)) => Some((String::new(), trackers, Vec::new())),
            Err(_) => {
                findings.push(Finding {
                    verdict: Verdict::Warn,
                    what: "tracker".into(),
                    said: "none given and none used before: name one with --tracker HOST:PORT, or a ticket".into(),
                });
                None
            }
        },
    };
    if let Some((wanted, trackers, holders)) = target {
        let shown = trackers.to_string();
        let node = Node::start(node_config(&args.node, Some(trackers))?).await?;
        show(&doctor::tracker(&node).await);
        if !wanted.is_empty() {
            match telling_if_slow(&shown, node.resolve(&wanted)).await {
                Ok(file) => findings.extend(doctor::holders(&node, file, &holders).await),
                Err(e) => findings.push(Finding {
                    verdict: Verdict::Fail,
                    what: format!("file {wanted}"),
                    said: e.to_string(),
                }),
            }
        }
        node.shutdown(std::time::Duration::ZERO).await;
    }
    findings.push(doctor::udp_buffers());
    findings.extend(doctor::disk_and_cpu(&args.output).await);
    findings.iter().for_each(show);
    let failed = findings.iter().filter(|f| f.verdict == Verdict::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed: see above");
    }
    Ok(())
}

fn show(finding: &Finding) {
    let word = match finding.verdict {
        Verdict::Good => "ok  ",
        Verdict::Warn => "warn",
        Verdict::Fail => "FAIL",
    };
    crate::out!("{word}  {}: {}", finding.what, finding.said);
}
