//! The TableSnap status: per-target state, pod counts from container statuses, and the four
//! conditions, computed as pure functions so that an unchanged world yields an unchanged status.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{TableSnapStatus, TargetStatus};
use crate::render::{HASH_ANNOTATION, SIDECAR_NAME};

/// Whether a StatefulSet is still rolling out its current template: the controller has not seen
/// the latest spec yet, or fewer pods than due run the update revision, or not all are ready.
/// With `OnDelete` nothing rolls by itself, so it is never waited for; a `partition` leaves the
/// ordinals below it on the old revision by design.
pub fn rolling_out(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> bool {
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
    let (ready, total) = injected
        .iter()
        .fold((0, 0), |(r, t), s| (r + s.pods_ready, t + s.pods_total));
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
    let degraded_reason = if !problems.is_empty() && !injected.is_empty() {
        Some(("SomeTargetsSkipped", describe(&problems)))
    } else if !injected.is_empty() && !all_running {
        Some((
            "AgentsNotRunning",
            format!("the agent runs in {ready} of {total} pods"),
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
    let is_ready = !targets.is_empty() && problems.is_empty() && all_running;
    let ready_cond = if is_ready {
        condition(
            "Ready",
            true,
            "AllPodsProtected",
            format!("the agent runs in all {total} pod(s)"),
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
    } else {
        condition(
            "Ready",
            false,
            "AgentsStarting",
            format!("the agent runs in {ready} of {total} pods"),
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
    }
}

/// Whether every pod of every injected target runs the agent (used to requeue sooner during rollouts).
pub fn settled(status: &TableSnapStatus) -> bool {
    status
        .targets
        .iter()
        .filter(|t| t.injected)
        .all(|t| t.pods_ready == t.pods_total)
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
}
