//! The TableSnap status: per-target state, pod counts from container statuses, and the four
//! conditions, computed as pure functions so that an unchanged world yields an unchanged status.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{TableSnapStatus, TargetKind, TargetStatus};
use crate::render::{HASH_ANNOTATION, SIDECAR_NAME};
use crate::report::AgentReport;

/// Whether a StatefulSet is still rolling out its current template: the controller has not seen
/// the latest spec yet, or fewer pods than due run the update revision, or not all are ready.
/// With `OnDelete` nothing rolls by itself, so it is never waited for; a `partition` leaves the
/// ordinals below it on the old revision by design.
pub fn rolling_out(sts: &StatefulSet) -> bool {
    let Some(spec) = sts.spec.as_ref() else {
        return false;
    };
    let strategy = spec.update_strategy.as_ref();
    if strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete") {
        return false;
    }
    let replicas = spec.replicas.unwrap_or(1);
    let partition = strategy
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .clamp(0, replicas);
    let Some(st) = sts.status.as_ref() else {
        return true;
    };
    st.observed_generation.unwrap_or(0) < sts.metadata.generation.unwrap_or(0)
        || st.updated_replicas.unwrap_or(0) < replicas - partition
        || st.ready_replicas.unwrap_or(0) < replicas
}

/// Whether cass-operator is still rolling a CassandraDatacenter: it has not seen the latest spec
/// (`status.observedGeneration`), or says `cassandraOperatorProgress: Updating`, or a condition
/// `Updating` or `RollingRestart` is True. A datacenter that cass-operator has never reconciled
/// (no status) is not rolling.
pub fn datacenter_rolling_out(dc: &kube::api::DynamicObject) -> bool {
    let Some(status) = dc.data.get("status") else {
        return false;
    };
    let seen = status.get("observedGeneration").and_then(|g| g.as_i64());
    let behind = seen.is_some_and(|g| g < dc.metadata.generation.unwrap_or(0));
    let updating = status
        .get("cassandraOperatorProgress")
        .and_then(|p| p.as_str())
        == Some("Updating");
    let condition = status
        .get("conditions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .any(|c| {
            matches!(c["type"].as_str(), Some("Updating" | "RollingRestart"))
                && c["status"] == "True"
        });
    behind || updating || condition
}

/// An agent whose oldest waiting file was seen longer ago than this does not protect its pod
/// (an upload of a very large SSTable may take this long; a stuck one must show).
pub const MAX_UNSHIPPED_AGE: i64 = 30 * 60;
/// A recovery point that moved forward by less than this keeps its previous value in the status,
/// so that each reconcile (and the status write it causes) does not write a new one.
pub const RECOVERY_POINT_STEP: i64 = 60;
/// Pods named in `unprotected` at most.
pub const UNPROTECTED_NAMED: usize = 5;

/// Why an agent's report does not protect its pod; `None` when it does.
pub fn why_unprotected(report: &Result<AgentReport, String>) -> Option<String> {
    match report {
        Err(e) => Some(format!("no report from the agent ({e})")),
        Ok(r) if !r.storage_ready => Some("the agent waits for the bucket (see its log)".into()),
        Ok(r) if !r.healthy => Some("the agent's loops have stalled".into()),
        Ok(r) => match r.recovery_point {
            None => Some("the agent reports no recovery point".into()),
            Some(p) if r.time - p > MAX_UNSHIPPED_AGE => Some(format!(
                "{} file(s) wait, the oldest for {} min",
                r.queue_depth,
                (r.time - p) / 60
            )),
            Some(_) => None,
        },
    }
}

/// What the reports of a target's pods say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// Pods whose agent protects them.
    pub protected: i32,
    /// The oldest recovery point (unix seconds), when every pod has one.
    pub oldest_recovery_point: Option<i64>,
    /// `pod: why` for the first few pods that are not protected, sorted by pod name.
    pub unprotected: Vec<String>,
    /// The commit log window (unix seconds) in which every pod can be restored: the latest start
    /// and the earliest end, when every pod reports one and they overlap.
    pub recoverable_window: Option<(i64, i64)>,
}

/// The protection of a target: `reports` for the pods whose agent runs, `not_running` for the
/// others (by name), `missing` for the pods its StatefulSets want that do not exist (see
/// [`missing_pods`]).
pub fn protection(
    reports: &[(String, Result<AgentReport, String>)],
    not_running: &[String],
    missing: &[String],
) -> Protection {
    let mut unprotected: Vec<(String, String)> = not_running
        .iter()
        .map(|p| {
            (
                p.clone(),
                "the agent is not running with this configuration".into(),
            )
        })
        .chain(missing.iter().map(|p| (p.clone(), MISSING.into())))
        .collect();
    let mut points = Vec::new();
    let mut windows = Vec::new();
    for (pod, report) in reports {
        if let Ok(AgentReport {
            commitlog:
                Some(crate::report::CommitlogReport {
                    window_start: Some(s),
                    window_end: Some(e),
                    ..
                }),
            ..
        }) = report
        {
            windows.push((*s, *e));
        }
        if let Some(why) = why_unprotected(report) {
            unprotected.push((pod.clone(), why));
        }
        if let Ok(AgentReport {
            recovery_point: Some(p),
            ..
        }) = report
        {
            points.push(*p);
        }
    }
    unprotected.sort();
    let all_run = not_running.is_empty() && missing.is_empty();
    let everyone = all_run && points.len() == reports.len();
    let window = (all_run && !windows.is_empty() && windows.len() == reports.len())
        .then(|| {
            let start = windows.iter().map(|w| w.0).max().unwrap_or(0);
            let end = windows.iter().map(|w| w.1).min().unwrap_or(0);
            (start, end)
        })
        .filter(|(s, e)| s <= e);
    Protection {
        recoverable_window: window,
        protected: count(reports.len() + not_running.len() + missing.len() - unprotected.len()),
        oldest_recovery_point: points.iter().min().copied().filter(|_| everyone),
        unprotected: unprotected
            .into_iter()
            .take(UNPROTECTED_NAMED)
            .map(|(pod, why)| format!("{pod}: {why}"))
            .collect(),
    }
}

/// Why a pod named in [`missing_pods`] is not protected.
pub const MISSING: &str =
    "no such pod: its StatefulSet wants it but it does not exist (being recreated, or refused)";

/// The StatefulSets whose pods are a target's: the StatefulSet itself, or the rack StatefulSets
/// cass-operator made for a CassandraDatacenter (their controller owner).
pub fn pod_owners<'a>(
    kind: TargetKind,
    target: &str,
    statefulsets: &'a [StatefulSet],
) -> Vec<&'a StatefulSet> {
    statefulsets
        .iter()
        .filter(|s| match kind {
            TargetKind::StatefulSet => s.metadata.name.as_deref() == Some(target),
            TargetKind::CassandraDatacenter => {
                s.metadata.owner_references.iter().flatten().any(|o| {
                    o.controller == Some(true)
                        && o.kind == TargetKind::CassandraDatacenter.as_str()
                        && o.name == target
                })
            }
        })
        .collect()
}

/// The pods `owners` want that are not among `pods`, by name: the StatefulSet controller names
/// its pods `<name>-<ordinal>`, ordinals `start..start + replicas`. A pod being recreated during a
/// rollout, or one the API server refuses (quota, admission policy), runs no agent: it counts
/// among the target's pods as not protected, so that `Ready` never counts it out.
pub fn missing_pods(owners: &[&StatefulSet], pods: &[Pod]) -> Vec<String> {
    let mut missing = Vec::new();
    for sts in owners {
        let (Some(name), Some(spec)) = (sts.metadata.name.as_deref(), sts.spec.as_ref()) else {
            continue;
        };
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        for ordinal in start..start.saturating_add(spec.replicas.unwrap_or(1).max(0)) {
            let pod = format!("{name}-{ordinal}");
            if !pods
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(&pod))
            {
                missing.push(pod);
            }
        }
    }
    missing
}

/// The recovery point to write: the previous one while the new one is less than
/// [`RECOVERY_POINT_STEP`] ahead of it.
pub fn steady_recovery_point(previous: Option<&str>, new: Option<i64>) -> Option<String> {
    let new = new?;
    let old = previous.and_then(|p| p.parse::<jiff::Timestamp>().ok());
    if let Some(old) = old
        && (0..RECOVERY_POINT_STEP).contains(&(new - old.as_second()))
    {
        return Some(old.to_string());
    }
    jiff::Timestamp::from_second(new)
        .ok()
        .map(|t| t.to_string())
}

/// Pods whose agent container runs with `config` (see [`pods_with_agent`]), by index into `pods`.
pub fn running_agents(pods: &[Pod], config: Option<&str>) -> Vec<usize> {
    (0..pods.len())
        .filter(|&i| pods_with_agent(&pods[i..=i], config).0 == 1)
        .collect()
}

/// Pods whose agent container is running, and all pods. With `config`, only pods made from the
/// template that carries this config hash count: after a spec change, an agent still running the
/// old configuration is not what the user asked for.
pub fn pods_with_agent(pods: &[Pod], config: Option<&str>) -> (i32, i32) {
    let running = pods
        .iter()
        .filter(|p| {
            config.is_none_or(|hash| {
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(HASH_ANNOTATION))
                    .map(String::as_str)
                    == Some(hash)
            })
        })
        .filter(|p| {
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref());
            statuses.into_iter().flatten().any(|c| {
                c.name == SIDECAR_NAME && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .count();
    (count(running), count(pods.len()))
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status for these targets. Conditions whose status did not change keep their previous
/// transition time, so that recomputing an unchanged status yields an equal value.
pub fn compute(
    targets: Vec<TargetStatus>,
    generation: Option<i64>,
    previous: Option<&TableSnapStatus>,
    now: Time,
) -> TableSnapStatus {
    let problems: Vec<&TargetStatus> = targets.iter().filter(|t| t.reason.is_some()).collect();
    let injected: Vec<&TargetStatus> = targets.iter().filter(|t| t.injected).collect();
    let (ready, protected, total) = injected.iter().fold((0, 0, 0), |(r, p, t), s| {
        (r + s.pods_ready, p + s.pods_protected, t + s.pods_total)
    });
    let unprotected = injected
        .iter()
        .flat_map(|t| {
            t.unprotected
                .iter()
                .map(move |u| format!("{} {}: {u}", t.kind, t.name))
        })
        .take(UNPROTECTED_NAMED)
        .collect::<Vec<_>>()
        .join("; ");
    let describe = |ts: &[&TargetStatus]| {
        ts.iter()
            .map(|t| {
                format!(
                    "{} {}: {}",
                    t.kind,
                    t.name,
                    t.message.clone().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };

    let resolved = if targets.is_empty() {
        condition(
            "TargetsResolved",
            false,
            "NoTargets",
            "the selector matches no StatefulSet or CassandraDatacenter in this namespace".into(),
            generation,
            &now,
        )
    } else if problems.is_empty() {
        condition(
            "TargetsResolved",
            true,
            "Resolved",
            format!("{} target(s) resolved", targets.len()),
            generation,
            &now,
        )
    } else {
        condition(
            "TargetsResolved",
            false,
            problems[0].reason.as_deref().unwrap_or("Unresolved"),
            describe(&problems),
            generation,
            &now,
        )
    };
    let inject = if injected.is_empty() {
        condition(
            "Injected",
            false,
            "NothingInjected",
            "no target has the sidecar".into(),
            generation,
            &now,
        )
    } else {
        condition(
            "Injected",
            true,
            "Applied",
            format!("the sidecar is applied to {} target(s)", injected.len()),
            generation,
            &now,
        )
    };
    let all_running = ready == total;
    let all_protected = protected == total;
    let degraded_reason = if !problems.is_empty() && !injected.is_empty() {
        Some(("SomeTargetsSkipped", describe(&problems)))
    } else if !injected.is_empty() && !all_running {
        Some((
            "AgentsNotRunning",
            format!("the agent runs in {ready} of {total} pods: {unprotected}"),
        ))
    } else if !injected.is_empty() && !all_protected {
        Some((
            "AgentsNotShipping",
            format!("the agent protects {protected} of {total} pods: {unprotected}"),
        ))
    } else {
        None
    };
    let degraded = match degraded_reason {
        Some((reason, message)) => condition("Degraded", true, reason, message, generation, &now),
        None => condition(
            "Degraded",
            false,
            "AsDesired",
            "nothing is degraded".into(),
            generation,
            &now,
        ),
    };
    let is_ready = !targets.is_empty() && problems.is_empty() && all_protected;
    let ready_cond = if is_ready {
        condition(
            "Ready",
            true,
            "AllPodsProtected",
            format!("the agent in each of the {total} pod(s) reports that it ships"),
            generation,
            &now,
        )
    } else if targets.is_empty() {
        condition(
            "Ready",
            false,
            "NoTargets",
            "no target selected".into(),
            generation,
            &now,
        )
    } else if !problems.is_empty() {
        condition(
            "Ready",
            false,
            "TargetsNotInjected",
            describe(&problems),
            generation,
            &now,
        )
    } else if !all_running {
        condition(
            "Ready",
            false,
            "AgentsStarting",
            format!("the agent runs in {ready} of {total} pods"),
            generation,
            &now,
        )
    } else {
        condition(
            "Ready",
            false,
            "AgentsNotShipping",
            format!("the agent protects {protected} of {total} pods: {unprotected}"),
            generation,
            &now,
        )
    };

    let mut conditions = vec![ready_cond, resolved, inject, degraded];
    for c in &mut conditions {
        if let Some(old) = previous.and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_))
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    TableSnapStatus {
        observed_generation: generation,
        target_count: count(targets.len()),
        conditions,
        targets,
        preflight_passed: previous.and_then(|p| p.preflight_passed.clone()),
    }
}

/// Whether every pod of every injected target runs the agent (used to requeue sooner during rollouts).
pub fn settled(status: &TableSnapStatus) -> bool {
    status
        .targets
        .iter()
        .filter(|t| t.injected)
        .all(|t| t.pods_protected == t.pods_total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    fn pod(agent: Option<bool>) -> Pod {
        let statuses = agent.map(|running| {
            vec![ContainerStatus {
                name: SIDECAR_NAME.into(),
                state: Some(if running {
                    ContainerState {
                        running: Some(ContainerStateRunning::default()),
                        ..Default::default()
                    }
                } else {
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: None,
                        }),
                        ..Default::default()
                    }
                }),
                ..Default::default()
            }]
        });
        Pod {
            status: Some(PodStatus {
                init_container_statuses: statuses,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn target(injected: bool, ready: i32, total: i32, reason: Option<&str>) -> TargetStatus {
        TargetStatus {
            kind: "StatefulSet".into(),
            name: "s".into(),
            injected,
            pods_ready: ready,
            pods_total: total,
            pods_protected: ready,
            reason: reason.map(Into::into),
            message: reason.map(|r| format!("because {r}")),
            ..Default::default()
        }
    }

    fn cond<'a>(s: &'a TableSnapStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn now(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn counts_running_agents_from_init_container_statuses() {
        assert_eq!(
            pods_with_agent(&[pod(Some(true)), pod(Some(false)), pod(None)], None),
            (1, 3)
        );
        assert_eq!(pods_with_agent(&[], None), (0, 0));
        assert_eq!(
            pods_with_agent(&[pod(Some(true))], Some("abc")),
            (0, 1),
            "a pod of another configuration is not protected"
        );
        // Issue 13 (mutation testing): which pods, by index, for the agents' reports.
        let pods = [
            pod(Some(false)),
            pod(Some(true)),
            pod(None),
            pod(Some(true)),
        ];
        assert_eq!(running_agents(&pods, None), vec![1, 3]);
        assert_eq!(running_agents(&pods, Some("abc")), Vec::<usize>::new());
    }

    #[test]
    fn all_pods_protected_is_ready() {
        let s = compute(
            vec![target(true, 3, 3, None)],
            Some(2),
            None,
            now("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.target_count, 1);
        for (t, status) in [
            ("Ready", "True"),
            ("TargetsResolved", "True"),
            ("Injected", "True"),
            ("Degraded", "False"),
        ] {
            assert_eq!(cond(&s, t).status, status, "{t}");
        }
        // Issue 13 (mutation testing): a settled TableSnap is requeued at the slow pace; a target
        // that is not injected (refused, or its pods not selected) does not hold that up.
        assert!(settled(&s));
        let s = compute(
            vec![
                target(true, 3, 3, None),
                target(false, 0, 2, Some("Refused")),
            ],
            Some(2),
            None,
            now("2026-01-01T00:00:00Z"),
        );
        assert!(settled(&s));
    }

    #[test]
    fn rollout_in_progress_is_degraded_not_ready() {
        let s = compute(
            vec![target(true, 1, 3, None)],
            Some(1),
            None,
            now("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            (
                cond(&s, "Ready").status.as_str(),
                cond(&s, "Ready").reason.as_str()
            ),
            ("False", "AgentsStarting")
        );
        assert_eq!(cond(&s, "Degraded").reason, "AgentsNotRunning");
        assert!(!settled(&s));
    }

    #[test]
    fn a_problem_target_is_reported_with_its_reason() {
        let s = compute(
            vec![
                target(true, 1, 1, None),
                target(false, 0, 0, Some("Conflict")),
            ],
            Some(1),
            None,
            now("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            (
                cond(&s, "TargetsResolved").status.as_str(),
                cond(&s, "TargetsResolved").reason.as_str()
            ),
            ("False", "Conflict")
        );
        assert!(
            cond(&s, "TargetsResolved")
                .message
                .contains("because Conflict")
        );
        assert_eq!(cond(&s, "Degraded").reason, "SomeTargetsSkipped");
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    fn report(time: i64, ready: bool, healthy: bool, point: Option<i64>) -> AgentReport {
        AgentReport {
            time,
            storage_ready: ready,
            healthy,
            queue_depth: 3,
            recovery_point: point,
            ..Default::default()
        }
    }

    #[test]
    fn the_recoverable_window_is_where_every_pod_can_be_restored() {
        let with = |start: Option<i64>, end: Option<i64>| {
            let mut r = report(1000, true, true, Some(1000));
            r.commitlog = Some(crate::report::CommitlogReport {
                window_start: start,
                window_end: end,
                segments_dropped: 0,
            });
            Ok(r)
        };
        let reports = vec![
            ("p-0".to_string(), with(Some(100), Some(900))),
            ("p-1".to_string(), with(Some(300), Some(700))),
        ];
        assert_eq!(
            protection(&reports, &[], &[]).recoverable_window,
            Some((300, 700))
        );
        // A pod without a window (nothing shipped yet, or after a drop): none for the target.
        let mut missing = reports.clone();
        missing.push(("p-2".to_string(), with(None, None)));
        assert_eq!(protection(&missing, &[], &[]).recoverable_window, None);
        missing.pop();
        missing.push(("p-2".to_string(), Ok(report(1000, true, true, Some(1000)))));
        assert_eq!(protection(&missing, &[], &[]).recoverable_window, None);
        let with_one_not_running = protection(&reports, &["p-3".to_string()], &[]);
        assert_eq!(
            with_one_not_running.recoverable_window, None,
            "a pod whose agent does not run"
        );
        assert_eq!(
            with_one_not_running.oldest_recovery_point, None,
            "nor a recovery point, though every running agent has one"
        );
        // Windows that do not overlap.
        let apart = vec![
            ("p-0".to_string(), with(Some(100), Some(200))),
            ("p-1".to_string(), with(Some(300), Some(700))),
        ];
        assert_eq!(protection(&apart, &[], &[]).recoverable_window, None);
        assert_eq!(protection(&[], &[], &[]).recoverable_window, None);
    }

    #[test]
    fn an_agent_protects_its_pod_only_when_it_says_it_ships() {
        assert_eq!(
            why_unprotected(&Ok(report(1000, true, true, Some(1000)))),
            None
        );
        let limit = 1000 - MAX_UNSHIPPED_AGE;
        assert_eq!(
            why_unprotected(&Ok(report(1000, true, true, Some(limit)))),
            None
        );
        let stuck = why_unprotected(&Ok(report(1000, true, true, Some(limit - 1)))).unwrap();
        assert!(
            stuck.contains("3 file(s) wait, the oldest for 30 min"),
            "{stuck}"
        );
        assert!(
            why_unprotected(&Ok(report(1000, false, true, None)))
                .unwrap()
                .contains("waits for the bucket")
        );
        assert!(
            why_unprotected(&Ok(report(1000, true, false, Some(1000))))
                .unwrap()
                .contains("stalled")
        );
        assert!(why_unprotected(&Ok(report(1000, true, true, None))).is_some());
        assert!(
            why_unprotected(&Err("connection refused".into()))
                .unwrap()
                .contains("connection refused")
        );
    }

    #[test]
    fn a_target_is_as_protected_as_its_worst_pod() {
        let all = protection(
            &[
                ("c-0".into(), Ok(report(1000, true, true, Some(900)))),
                ("c-1".into(), Ok(report(1000, true, true, Some(950)))),
            ],
            &[],
            &[],
        );
        assert_eq!(
            all,
            Protection {
                protected: 2,
                oldest_recovery_point: Some(900),
                unprotected: vec![],
                recoverable_window: None,
            }
        );
        let some = protection(
            &[
                ("c-2".into(), Ok(report(1000, false, true, None))),
                ("c-0".into(), Ok(report(1000, true, true, Some(900)))),
            ],
            &["c-1".into()],
            &[],
        );
        assert_eq!(some.protected, 1);
        assert_eq!(
            some.oldest_recovery_point, None,
            "unknown while a pod has none"
        );
        assert_eq!(some.unprotected.len(), 2);
        assert!(some.unprotected[0].starts_with("c-1: the agent is not running"));
        assert!(some.unprotected[1].starts_with("c-2: the agent waits"));
        let many: Vec<String> = (0..9).map(|i| format!("c-{i}")).collect();
        let p = protection(&[], &many, &[]);
        assert_eq!((p.protected, p.unprotected.len()), (0, UNPROTECTED_NAMED));
    }

    #[test]
    fn a_pod_its_statefulset_wants_and_that_does_not_exist_is_not_protected() {
        let sts = |name: &str, replicas: Option<i32>, start: Option<i32>, owner: Option<&str>| {
            let mut s: StatefulSet = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"selector": {}, "template": {}, "serviceName": "x"}
            }))
            .unwrap();
            let spec = s.spec.as_mut().unwrap();
            spec.replicas = replicas;
            spec.ordinals = start.map(|start| k8s_openapi::api::apps::v1::StatefulSetOrdinals {
                start: Some(start),
            });
            s.metadata.owner_references = owner.map(|dc| {
                vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                        api_version: "cassandra.datastax.com/v1beta1".into(),
                        kind: "CassandraDatacenter".into(),
                        name: dc.into(),
                        controller: Some(true),
                        ..Default::default()
                    },
                ]
            });
            s
        };
        let named = |name: &str| Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let all = [
            sts("cass", Some(3), None, None),
            sts("one", None, Some(5), None),
            sts("dc1-r1-sts", Some(2), None, Some("dc1")),
            sts("dc1-r2-sts", Some(1), None, Some("dc1")),
            sts("dc2-r1-sts", Some(1), None, Some("dc2")),
        ];
        let pods = [named("cass-0"), named("cass-2"), named("dc1-r1-sts-1")];
        let owners = pod_owners(TargetKind::StatefulSet, "cass", &all);
        assert_eq!(missing_pods(&owners, &pods), ["cass-1"]);
        // No replicas is one; ordinals start where the spec says.
        let owners = pod_owners(TargetKind::StatefulSet, "one", &all);
        assert_eq!(missing_pods(&owners, &pods), ["one-5"]);
        let owners = pod_owners(TargetKind::CassandraDatacenter, "dc1", &all);
        assert_eq!(
            missing_pods(&owners, &pods),
            ["dc1-r1-sts-0", "dc1-r2-sts-0"]
        );
        assert!(pod_owners(TargetKind::CassandraDatacenter, "cass", &all).is_empty());
        let mut scaled = sts("cass", Some(0), None, None);
        assert!(missing_pods(&[&scaled], &pods).is_empty());
        scaled.spec.as_mut().unwrap().replicas = Some(2);
        assert!(missing_pods(&[&scaled], &pods[..1]) == ["cass-1"]);

        // Missing pods count among the target's and are named; nothing is fully protected.
        let p = protection(
            &[("cass-0".into(), Ok(report(1000, true, true, Some(900))))],
            &[],
            &["cass-1".into()],
        );
        assert_eq!(p.protected, 1);
        assert_eq!(p.unprotected, [format!("cass-1: {MISSING}")]);
        assert_eq!(p.oldest_recovery_point, None, "cass-1 has none");
    }

    #[test]
    fn the_recovery_point_is_written_again_only_when_it_moved_a_step() {
        let t = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
        assert_eq!(steady_recovery_point(None, None), None);
        assert_eq!(steady_recovery_point(None, Some(1000)), Some(t(1000)));
        let prev = t(1000);
        assert_eq!(
            steady_recovery_point(Some(&prev), Some(1059)),
            Some(t(1000))
        );
        assert_eq!(
            steady_recovery_point(Some(&prev), Some(1060)),
            Some(t(1060))
        );
        assert_eq!(
            steady_recovery_point(Some(&prev), Some(990)),
            Some(t(990)),
            "a point that went back (a file waits) shows at once"
        );
        assert_eq!(steady_recovery_point(Some(&prev), None), None);
    }

    #[test]
    fn running_but_not_shipping_is_degraded_and_not_ready() {
        let mut t = target(true, 2, 2, None);
        t.pods_protected = 1;
        t.unprotected = vec!["c-1: the agent waits for the bucket (see its log)".into()];
        let s = compute(vec![t], Some(1), None, now("2026-01-01T00:00:00Z"));
        assert_eq!(
            (
                cond(&s, "Ready").status.as_str(),
                cond(&s, "Ready").reason.as_str()
            ),
            ("False", "AgentsNotShipping")
        );
        assert_eq!(cond(&s, "Degraded").reason, "AgentsNotShipping");
        assert!(
            cond(&s, "Degraded")
                .message
                .contains("c-1: the agent waits for the bucket"),
            "{:?}",
            cond(&s, "Degraded")
        );
        assert!(!settled(&s));
    }

    #[test]
    fn a_datacenter_rolls_while_cass_operator_says_so() {
        let dc = |generation: i64, status: serde_json::Value| {
            let mut d: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "cassandra.datastax.com/v1beta1", "kind": "CassandraDatacenter",
                "metadata": {"name": "dc1", "generation": generation}, "status": status
            }))
            .unwrap();
            if d.data["status"].is_null() {
                d.data.as_object_mut().unwrap().remove("status");
            }
            d
        };
        let ready = serde_json::json!({"observedGeneration": 3, "cassandraOperatorProgress": "Ready",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Updating", "status": "False"}]});
        assert!(!datacenter_rolling_out(&dc(3, ready.clone())));
        assert!(
            datacenter_rolling_out(&dc(4, ready.clone())),
            "spec not seen yet"
        );
        let mut updating = ready.clone();
        updating["cassandraOperatorProgress"] = "Updating".into();
        assert!(datacenter_rolling_out(&dc(3, updating)));
        let mut restart = ready;
        restart["conditions"][1] = serde_json::json!({"type": "RollingRestart", "status": "True"});
        assert!(datacenter_rolling_out(&dc(3, restart)));
        assert!(
            !datacenter_rolling_out(&dc(1, serde_json::Value::Null)),
            "never reconciled"
        );
    }

    #[test]
    fn no_targets() {
        let s = compute(vec![], Some(1), None, now("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "TargetsResolved").reason, "NoTargets");
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = compute(
            vec![target(true, 1, 1, None)],
            Some(1),
            None,
            now("2026-01-01T00:00:00Z"),
        );
        let again = compute(
            vec![target(true, 1, 1, None)],
            Some(1),
            Some(&first),
            now("2026-01-02T00:00:00Z"),
        );
        assert_eq!(
            first, again,
            "recomputing an unchanged world must not change the status"
        );
        let changed = compute(
            vec![target(true, 0, 1, None)],
            Some(1),
            Some(&first),
            now("2026-01-03T00:00:00Z"),
        );
        assert_eq!(
            cond(&changed, "Ready").last_transition_time,
            now("2026-01-03T00:00:00Z")
        );
        assert_eq!(
            cond(&changed, "Injected").last_transition_time,
            now("2026-01-01T00:00:00Z")
        );
    }

    /// Issue 13 (mutation testing): when a StatefulSet still rolls: the controller has not seen
    /// the latest spec, fewer pods than due run the update revision (a partition keeps the ones
    /// below it on the old one by design), or not all are ready; never with `OnDelete`; always
    /// before any status.
    #[test]
    fn a_statefulset_rolls_until_the_due_pods_run_the_update_and_are_ready() {
        use k8s_openapi::api::apps::v1::StatefulSet;
        let sts = |strategy: serde_json::Value, status: Option<serde_json::Value>| -> StatefulSet {
            let mut v = serde_json::json!({
                "metadata": {"name": "c", "generation": 2},
                "spec": {"replicas": 3, "selector": {}, "template": {}, "updateStrategy": strategy},
            });
            if let Some(st) = status {
                v["status"] = st;
            }
            serde_json::from_value(v).unwrap()
        };
        let done = serde_json::json!({"replicas": 3, "observedGeneration": 2, "updatedReplicas": 3, "readyReplicas": 3});
        let with = |k: &str, n: i64| {
            let mut d = done.clone();
            d[k] = n.into();
            Some(d)
        };
        let rolling = serde_json::json!({"type": "RollingUpdate"});
        assert!(!rolling_out(&sts(rolling.clone(), Some(done.clone()))));
        assert!(rolling_out(&sts(rolling.clone(), None)), "no status yet");
        assert!(rolling_out(&sts(
            rolling.clone(),
            with("observedGeneration", 1)
        )));
        assert!(rolling_out(&sts(
            rolling.clone(),
            with("updatedReplicas", 2)
        )));
        assert!(rolling_out(&sts(rolling.clone(), with("readyReplicas", 2))));
        let on_delete = serde_json::json!({"type": "OnDelete"});
        assert!(!rolling_out(&sts(on_delete, with("updatedReplicas", 0))));
        let partition =
            serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        assert!(!rolling_out(&sts(
            partition.clone(),
            with("updatedReplicas", 2)
        )));
        assert!(rolling_out(&sts(partition, with("updatedReplicas", 1))));
        let no_spec: StatefulSet =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}})).unwrap();
        assert!(!rolling_out(&no_spec));
    }
}
