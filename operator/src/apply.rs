//! The reconciler: read the namespace, decide with pure functions ([`plan`]), then write only what
//! differs, every write a server-side apply under the field manager `tablesnap-operator`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use crate::crd::{TableSnap, TableSnapStatus, TargetKind, TargetStatus};
use crate::error::{Error, Result};
use crate::metrics::{ActionLabel, Metrics, ResultLabel};
use crate::render::{
    self, FIELD_MANAGER, HASH_ANNOTATION, OWNER_ANNOTATION, SCRATCH_VOLUME, SIDECAR_NAME,
};
use crate::resolve::{self, Candidate, DataVolume, Problem, Resolution};
use crate::{cleanup, preflight, report, status};

/// The finalizer that makes deletion remove the sidecars first.
pub const FINALIZER: &str = "tablesnap.io/cleanup";

/// What the reconciler needs: a client, an event recorder, metrics.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes events on TableSnaps.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Metrics,
}

/// One selected target and what to do with it.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Its kind.
    pub kind: TargetKind,
    /// Its name.
    pub name: String,
    /// Inject or skip.
    pub outcome: Outcome,
}

/// The decision for one target.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Apply `body`, unless the live object already carries it.
    Apply {
        /// The data volume the sidecar mounts.
        data: DataVolume,
        /// The server-side apply body.
        body: Value,
        /// The live pod template already has this exact sidecar.
        up_to_date: bool,
        /// The label selector of the target's pods.
        pod_selector: String,
    },
    /// Touch nothing; report this.
    Skip(Problem),
}

/// Everything one reconcile will do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Selected targets.
    pub targets: Vec<Planned>,
    /// Targets carrying our sidecar for this TableSnap that are no longer selected.
    pub removals: Vec<(TargetKind, String)>,
}

fn pod_selector(candidate: &Candidate<'_>) -> String {
    match candidate {
        // The whole selector, matchExpressions included; one that cannot be read selects
        // nothing (a label both required and forbidden) rather than the whole namespace.
        Candidate::StatefulSet(sts) => sts
            .spec
            .as_ref()
            .and_then(|s| kube::core::Selector::try_from(s.selector.clone()).ok())
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "tablesnap.io/none,!tablesnap.io/none".into()),
        Candidate::Datacenter(dc) => {
            format!("{}={}", resolve::CASS_OPERATOR_DC_LABEL, dc.name_any())
        }
    }
}

fn up_to_date(candidate: &Candidate<'_>, ts_name: &str, body: &Value) -> bool {
    let annotations = candidate.template_annotations();
    let pod = candidate.pod_spec().unwrap_or_default();
    annotations.get(HASH_ANNOTATION).map(String::as_str) == render::body_hash(body)
        && annotations.get(OWNER_ANNOTATION).map(String::as_str) == Some(ts_name)
        && pod
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == SIDECAR_NAME)
        && pod
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == SCRATCH_VOLUME)
}

/// Decide, for one TableSnap and the namespace's objects, what to inject, skip and remove.
pub fn plan(
    ts: &TableSnap,
    tablesnaps: &[TableSnap],
    statefulsets: &[StatefulSet],
    datacenters: &[DynamicObject],
) -> Plan {
    let name = ts.name_any();
    let targets = &ts.spec.targets;
    let candidates: Vec<Candidate<'_>> = statefulsets
        .iter()
        .map(Candidate::StatefulSet)
        .chain(datacenters.iter().map(Candidate::Datacenter))
        .collect();
    let selected: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| resolve::selects(targets, c.kind(), &c.name(), c.labels()))
        .collect();
    let selected_dcs: Vec<String> = selected
        .iter()
        .filter(|c| c.kind() == TargetKind::CassandraDatacenter)
        .map(|c| c.name())
        .collect();

    let mut plan = Plan::default();
    for candidate in &selected {
        let (kind, target) = (candidate.kind(), candidate.name());
        let outcome = match resolve::resolve(candidate, targets, &selected_dcs) {
            Resolution::Ignore => continue,
            Resolution::Skip(problem) => Outcome::Skip(problem),
            Resolution::Inject(data) => {
                match resolve::claimant(tablesnaps, kind, &target, candidate.labels()) {
                    Some(other) if other.name_any() != name => Outcome::Skip(Problem {
                        reason: "Conflict",
                        message: format!(
                            "{} {target} is already backed up by the older TableSnap {}; delete one of the two or narrow its targets",
                            kind.as_str(),
                            other.name_any()
                        ),
                    }),
                    _ => {
                        let body = render::apply_body(ts, kind, &target, &targets.container, &data);
                        Outcome::Apply {
                            up_to_date: up_to_date(candidate, &name, &body),
                            pod_selector: pod_selector(candidate),
                            data,
                            body,
                        }
                    }
                }
            }
        };
        plan.targets.push(Planned {
            kind,
            name: target,
            outcome,
        });
    }
    for candidate in &candidates {
        // Ours: our annotation and our field manager. cass-operator copies a
        // CassandraDatacenter's podTemplateSpec, annotations included, into its rack
        // StatefulSets, which we never applied to and must not "remove" from.
        let ours = candidate.template_annotations().get(OWNER_ANNOTATION) == Some(&name)
            && candidate.managed_by(FIELD_MANAGER);
        let applied = plan.targets.iter().any(|p| {
            p.kind == candidate.kind()
                && p.name == candidate.name()
                && matches!(p.outcome, Outcome::Apply { .. })
        });
        if ours && !applied {
            plan.removals.push((candidate.kind(), candidate.name()));
        }
    }
    plan
}

/// The API of one target kind in a namespace.
pub fn target_api(client: &Client, kind: TargetKind, namespace: &str) -> Api<DynamicObject> {
    let ar = match kind {
        TargetKind::StatefulSet => kube::api::ApiResource::erase::<StatefulSet>(&()),
        TargetKind::CassandraDatacenter => resolve::cassandra_datacenter_resource(),
    };
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Server-side apply of `body` to a target under our field manager.
pub async fn server_side_apply(
    client: &Client,
    kind: TargetKind,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<DynamicObject> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(target_api(client, kind, namespace)
        .patch(name, &params, &Patch::Apply(body))
        .await?)
}

/// JSON-patch operations that take out what is left of our entries after the removal apply: an
/// entry another applier co-owns a field of (its own limits on the sidecar, say) survives the
/// apply as `{name: tablesnap, resources: ...}`, a plain init container with no args that
/// would keep the pods from starting. Each removal is guarded by a `test` of the entry's name.
pub fn leftover_removal(kind: TargetKind, object: &Value) -> Vec<Value> {
    let template = match kind {
        TargetKind::StatefulSet => "/spec/template",
        TargetKind::CassandraDatacenter => "/spec/podTemplateSpec",
    };
    let mut ops = Vec::new();
    for (list, name) in [
        ("initContainers", SIDECAR_NAME),
        ("volumes", SCRATCH_VOLUME),
    ] {
        let path = format!("{template}/spec/{list}");
        let items = object
            .pointer(&path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, item) in items.iter().enumerate().rev() {
            if item.get("name").and_then(Value::as_str) == Some(name) {
                ops.push(serde_json::json!({"op": "test", "path": format!("{path}/{i}/name"), "value": name}));
                ops.push(serde_json::json!({"op": "remove", "path": format!("{path}/{i}")}));
            }
        }
    }
    let annotations = format!("{template}/metadata/annotations");
    for key in [HASH_ANNOTATION, OWNER_ANNOTATION] {
        if object
            .pointer(&annotations)
            .and_then(|a| a.get(key))
            .is_some()
        {
            let escaped = key.replace('~', "~0").replace('/', "~1");
            ops.push(
                serde_json::json!({"op": "remove", "path": format!("{annotations}/{escaped}")}),
            );
        }
    }
    ops
}

/// The entries of `list` (`containers`, `initContainers`, `volumes`) in a pod spec, by name.
fn entry_names(pod_spec: Option<&Value>, list: &str) -> Vec<String> {
    pod_spec
        .and_then(|s| s.get(list))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What the API server would make of applying `body` to a CassandraDatacenter, asked with a dry
/// run before the real apply: cass-operator's CRD before v1.24 makes `podTemplateSpec`'s
/// `containers`, `initContainers` and `volumes` atomic lists, so an apply of our entries would
/// replace the user's, and before v1.20 it has no `restartPolicy`, so the sidecar would become a
/// plain init container. Either is reported instead of applied.
pub async fn datacenter_preflight(
    client: &Client,
    namespace: &str,
    live: &DynamicObject,
    body: &Value,
) -> Result<Option<Problem>> {
    let name = live.name_any();
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::apply(FIELD_MANAGER).force()
    };
    let merged = target_api(client, TargetKind::CassandraDatacenter, namespace)
        .patch(&name, &params, &Patch::Apply(body))
        .await?;
    Ok(dry_run_problem(
        &name,
        live.data.pointer("/spec/podTemplateSpec/spec"),
        merged.data.pointer("/spec/podTemplateSpec/spec"),
    ))
}

/// What the dry run of [`datacenter_preflight`] says, from CassandraDatacenter `name`'s pod spec
/// `before` (live) and `after` (as the apply would leave it): an entry of the user's lost, or
/// the sidecar without its `restartPolicy: Always`, is a problem.
pub fn dry_run_problem(
    name: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Option<Problem> {
    let mut lost = Vec::new();
    for list in [
        "containers",
        "initContainers",
        "volumes",
        "imagePullSecrets",
    ] {
        let kept = entry_names(after, list);
        for entry in entry_names(before, list) {
            if !kept.contains(&entry) {
                lost.push(format!("{list}[{entry}]"));
            }
        }
    }
    if !lost.is_empty() {
        return Some(Problem {
            reason: "PodTemplateListsNotMergeable",
            message: format!(
                "CassandraDatacenter {name}: this cass-operator's CRD makes podTemplateSpec's containers, initContainers and volumes atomic lists, so adding the sidecar would replace {}; upgrade cass-operator to v1.24 or later (its lists merge by name), then the sidecar is added",
                lost.join(", ")
            ),
        });
    }
    let sidecar_kept = after
        .and_then(|s| s.get("initContainers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["name"] == SIDECAR_NAME && c["restartPolicy"] == "Always");
    (!sidecar_kept).then(|| Problem {
        reason: "NativeSidecarUnsupported",
        message: format!(
            "CassandraDatacenter {name}: this cass-operator's CRD drops the sidecar's restartPolicy: Always, so it would become a plain init container that blocks Cassandra; upgrade cass-operator to v1.24 or later"
        ),
    })
}

/// The namespace's StatefulSets and CassandraDatacenters (none when cass-operator is not installed).
pub async fn list_targets(
    client: &Client,
    namespace: &str,
) -> Result<(Vec<StatefulSet>, Vec<DynamicObject>)> {
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let datacenters = match target_api(client, TargetKind::CassandraDatacenter, namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok((statefulsets, datacenters))
}

/// The object reference of a target, for an event's `related` field.
pub fn target_ref(kind: TargetKind, namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(render::api_version(kind).into()),
        kind: Some(kind.as_str().into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Publish an event on a TableSnap about one target; a failure is logged, never fails the reconcile.
pub async fn publish(
    ctx: &Context,
    ts: &TableSnap,
    type_: EventType,
    reason: &str,
    note: String,
    target: ObjectReference,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: Some(target),
    };
    if let Err(error) = ctx.recorder.publish(&event, &ts.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an event");
    }
}

/// Reconcile one TableSnap: the finalizer first, then apply or clean up.
pub async fn reconcile(ts: Arc<TableSnap>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = ts.namespace().ok_or_else(|| {
        Error::InvalidObject(format!("TableSnap {} has no namespace", ts.name_any()))
    })?;
    let api: Api<TableSnap> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, ts, |event| async {
        match event {
            FinalizerEvent::Apply(ts) => apply(&ts, &ctx).await,
            FinalizerEvent::Cleanup(ts) => cleanup::cleanup(&ts, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabel { result: label })
        .inc();
    result
}

async fn apply(ts: &TableSnap, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let namespace = ts.namespace().unwrap_or_default();
    let name = ts.name_any();
    let tablesnaps = Api::<TableSnap>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let (statefulsets, datacenters) = list_targets(client, &namespace).await?;
    let plan = plan(ts, &tablesnaps, &statefulsets, &datacenters);
    let previous = ts.status.as_ref();
    let was = |kind: TargetKind, target: &str| {
        previous.and_then(|s| {
            s.targets
                .iter()
                .find(|t| t.kind == kind.as_str() && t.name == target)
        })
    };

    // One rollout at a time: a change rolls every pod of its target, and per-rack StatefulSets
    // (or several CassandraDatacenters of one cluster, each rolled rack by rack by
    // cass-operator) rolled together would take a node of every rack down at once.
    let mut rolling: Option<String> = plan.targets.iter().find_map(|p| {
        let up_to_date = matches!(
            p.outcome,
            Outcome::Apply {
                up_to_date: true,
                ..
            }
        );
        let rolls = match p.kind {
            TargetKind::StatefulSet => statefulsets
                .iter()
                .find(|s| s.name_any() == p.name)
                .is_some_and(status::rolling_out),
            TargetKind::CassandraDatacenter => datacenters
                .iter()
                .find(|d| d.name_any() == p.name)
                .is_some_and(status::datacenter_rolling_out),
        };
        (up_to_date && rolls).then(|| format!("{} {}", p.kind.as_str(), p.name))
    });
    // The pre-flight check, before the first template changes for a new agent configuration:
    // an image that cannot be pulled or a Secret that does not exist must not reach the pods.
    let first_change = plan.targets.iter().find_map(|p| match &p.outcome {
        Outcome::Apply {
            up_to_date: false,
            data,
            ..
        } => Some(data.clone()),
        _ => None,
    });
    let mut preflight_passed = previous.and_then(|s| s.preflight_passed.clone());
    let mut preflight_problem: Option<Problem> = None;
    if let Some(data) = first_change {
        let sidecar = render::sidecar(ts, &data);
        let hash = preflight::hash(ts, &sidecar);
        if preflight_passed.as_deref() != Some(hash.as_str()) {
            match check_preflight(client, ts, &namespace, &sidecar).await? {
                preflight::Verdict::Passed => preflight_passed = Some(hash),
                preflight::Verdict::Pending(message) => {
                    preflight_problem = Some(Problem {
                        reason: "WaitingForPreflight",
                        message,
                    })
                }
                preflight::Verdict::Failed { message, .. } => {
                    preflight_problem = Some(Problem {
                        reason: "PreflightFailed",
                        message,
                    })
                }
            }
        }
    }
    let mut targets = Vec::new();
    for planned in &plan.targets {
        let (kind, target) = (planned.kind, planned.name.as_str());
        let mut outcome = planned.outcome.clone();
        let mut applied_now = false;
        if let (
            Outcome::Apply {
                up_to_date: false, ..
            },
            Some(problem),
        ) = (&outcome, &preflight_problem)
        {
            outcome = Outcome::Skip(problem.clone());
        }
        if let (
            Outcome::Apply {
                up_to_date: false, ..
            },
            Some(other),
        ) = (&outcome, &rolling)
        {
            outcome = Outcome::Skip(Problem {
                reason: "WaitingForRollout",
                message: format!(
                    "{} {target} gets the change once {other} has finished rolling out (one target at a time)",
                    kind.as_str()
                ),
            });
        }
        if let Outcome::Apply {
            body,
            up_to_date: false,
            ..
        } = &outcome
        {
            let attempt = async {
                let live = datacenters.iter().find(|d| d.name_any() == target);
                if let (TargetKind::CassandraDatacenter, Some(live)) = (kind, live)
                    && let Some(problem) =
                        datacenter_preflight(client, &namespace, live, body).await?
                {
                    return Ok(Some(problem));
                }
                server_side_apply(client, kind, &namespace, target, body).await?;
                Ok::<_, Error>(None)
            };
            match attempt.await {
                Ok(Some(problem)) => outcome = Outcome::Skip(problem),
                Ok(None) => {
                    applied_now = true;
                    rolling = Some(format!("{} {target}", kind.as_str()));
                }
                // Refused (admission policy, quota, validation): this target reports it, the
                // others go on.
                Err(Error::Kube(kube::Error::Api(status))) => {
                    outcome = Outcome::Skip(Problem {
                        reason: "ApplyFailed",
                        message: format!(
                            "{} {target}: the API server refused the sidecar ({}): {}",
                            kind.as_str(),
                            status.code,
                            status.message
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        match &outcome {
            Outcome::Apply {
                data,
                body,
                pod_selector,
                ..
            } => {
                if applied_now {
                    ctx.metrics
                        .applies
                        .get_or_create(&ActionLabel { action: "inject" })
                        .inc();
                    tracing::info!(tablesnap = %name, kind = kind.as_str(), target, volume = %data.volume, "applied the tablesnap sidecar");
                    publish(
                        ctx,
                        ts,
                        EventType::Normal,
                        "Injected",
                        format!(
                            "applied the tablesnap sidecar to {} {target}",
                            kind.as_str()
                        ),
                        target_ref(kind, &namespace, target),
                    )
                    .await;
                }
                let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
                    .list(&ListParams::default().labels(pod_selector))
                    .await?
                    .items;
                let missing =
                    status::missing_pods(&status::pod_owners(kind, target, &statefulsets), &pods);
                let (ready, existing) = status::pods_with_agent(&pods, render::body_hash(body));
                let total =
                    existing.saturating_add(i32::try_from(missing.len()).unwrap_or(i32::MAX));
                let protection = protection(
                    &pods,
                    &missing,
                    render::body_hash(body),
                    ts.spec.http_port(),
                )
                .await;
                let previous_point =
                    was(kind, target).and_then(|t| t.oldest_recovery_point.as_deref());
                let window = protection.recoverable_window;
                let (window_start, window_end) = match window {
                    Some((start, end)) => (
                        status::steady_recovery_point(
                            was(kind, target).and_then(|t| t.recoverable_window_start.as_deref()),
                            Some(start),
                        ),
                        status::steady_recovery_point(
                            was(kind, target).and_then(|t| t.recoverable_window_end.as_deref()),
                            Some(end),
                        ),
                    ),
                    None => (None, None),
                };
                targets.push(TargetStatus {
                    archive_command: render::archive_command(ts, data),
                    recoverable_window_start: window_start,
                    recoverable_window_end: window_end,
                    pods_protected: protection.protected,
                    oldest_recovery_point: status::steady_recovery_point(
                        previous_point,
                        protection.oldest_recovery_point,
                    ),
                    unprotected: protection.unprotected,
                    kind: kind.as_str().into(),
                    name: target.into(),
                    volume: Some(data.volume.clone()),
                    mount_path: Some(data.mount_path.clone()),
                    injected: true,
                    pods_ready: ready,
                    pods_total: total,
                    reason: None,
                    message: None,
                });
            }
            Outcome::Skip(problem) => {
                ctx.metrics.skipped.inc();
                let before = was(kind, target).and_then(|t| t.reason.as_deref());
                if matches!(problem.reason, "WaitingForRollout" | "WaitingForPreflight") {
                    tracing::info!(tablesnap = %name, kind = kind.as_str(), target, message = %problem.message, "waiting before changing the pod template");
                } else if before != Some(problem.reason) {
                    tracing::warn!(tablesnap = %name, kind = kind.as_str(), target, reason = problem.reason, message = %problem.message, "skipped a target");
                    let reason = match problem.reason {
                        "Conflict" | "ApplyFailed" | "PreflightFailed" => problem.reason,
                        _ => "TargetSkipped",
                    };
                    publish(
                        ctx,
                        ts,
                        EventType::Warning,
                        reason,
                        problem.message.clone(),
                        target_ref(kind, &namespace, target),
                    )
                    .await;
                }
                targets.push(TargetStatus {
                    kind: kind.as_str().into(),
                    name: target.into(),
                    reason: Some(problem.reason.into()),
                    message: Some(problem.message.clone()),
                    ..Default::default()
                });
            }
        }
    }
    for (kind, target) in &plan.removals {
        remove_from(ctx, ts, *kind, &namespace, target).await?;
    }

    let now = Time(jiff::Timestamp::now());
    let mut new_status = status::compute(targets, ts.metadata.generation, previous, now);
    new_status.preflight_passed = preflight_passed;
    if previous != Some(&new_status) {
        patch_status(client, &namespace, &name, &new_status).await?;
    }
    // Pods are not watched: look at the pre-flight pod again soon.
    Ok(if preflight_problem.is_some() {
        Action::requeue(Duration::from_secs(5))
    } else if status::settled(&new_status) {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(30))
    })
}

/// The pre-flight pod of this configuration: created when missing, its verdict read, deleted once
/// it passed (or [`preflight::RETRY_AFTER_SECONDS`] after it failed, to try again); pods of this
/// TableSnap's earlier configurations are deleted.
async fn check_preflight(
    client: &Client,
    ts: &TableSnap,
    namespace: &str,
    sidecar: &k8s_openapi::api::core::v1::Container,
) -> Result<preflight::Verdict> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let wanted = preflight::pod(ts, sidecar);
    let name = wanted.name_any();
    // One LIST of this TableSnap's pre-flight pods (the operator's RBAC has no `get` on pods):
    // the one of this configuration, and those of earlier ones, which go.
    let ours = ListParams::default().labels(&format!("{}={}", preflight::LABEL, ts.name_any()));
    let mut live = None;
    for pod in pods.list(&ours).await?.items {
        if pod.name_any() == name {
            live = Some(pod);
        } else {
            delete_pod(&pods, &pod.name_any()).await?;
        }
    }
    let Some(live) = live else {
        match pods.create(&Default::default(), &wanted).await {
            Ok(_) => {
                tracing::info!(tablesnap = %ts.name_any(), pod = %name, "started the pre-flight pod")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(preflight::verdict(&wanted));
    };
    let verdict = preflight::verdict(&live);
    if preflight::retire(&live, &verdict, jiff::Timestamp::now()) {
        delete_pod(&pods, &name).await?;
    }
    Ok(verdict)
}

/// Deletes pod `name`; one already gone is deleted.
pub async fn delete_pod(pods: &Api<Pod>, name: &str) -> Result<()> {
    match pods.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Ask the agent of each pod that runs it with `config` for its report, at most
/// [`report::CONCURRENCY`] at once, and decide what they say.
async fn protection(
    pods: &[Pod],
    missing: &[String],
    config: Option<&str>,
    port: i32,
) -> status::Protection {
    use futures::StreamExt;
    let running = status::running_agents(pods, config);
    let not_running: Vec<String> = (0..pods.len())
        .filter(|i| !running.contains(i))
        .map(|i| pods[i].name_any())
        .collect();
    let client = report::client();
    let reports: Vec<(String, std::result::Result<report::AgentReport, String>)> =
        futures::stream::iter(running.into_iter().map(|i| {
            // Owned, so that the futures are Send for any lifetime the controller asks.
            let name = pods[i].name_any();
            let ip = pods[i].status.as_ref().and_then(|s| s.pod_ip.clone());
            let client = client.clone();
            async move {
                let report = match ip {
                    Some(ip) => report::fetch(&client, &ip, port).await,
                    None => Err("the pod has no IP yet".into()),
                };
                (name, report)
            }
        }))
        .buffer_unordered(report::CONCURRENCY)
        .collect()
        .await;
    status::protection(&reports, &not_running, missing)
}

/// Remove our fields from one target and say so.
pub async fn remove_from(
    ctx: &Context,
    ts: &TableSnap,
    kind: TargetKind,
    namespace: &str,
    target: &str,
) -> Result<()> {
    let body = render::removal_body(kind, target, namespace);
    let after = match server_side_apply(&ctx.client, kind, namespace, target, &body).await {
        // An apply to an object deleted meanwhile is a create: 403 without the create
        // permission, 422 for the partial object, never 404. Gone is removed.
        Err(Error::Kube(kube::Error::Api(status))) => {
            let named = ListParams::default().fields(&format!("metadata.name={target}"));
            let exists = !target_api(&ctx.client, kind, namespace)
                .list_metadata(&named)
                .await?
                .items
                .is_empty();
            if exists {
                return Err(Error::Kube(kube::Error::Api(status)));
            }
            tracing::info!(tablesnap = %ts.name_any(), kind = kind.as_str(), target, "the target is gone; nothing to remove");
            return Ok(());
        }
        other => other?,
    };
    let leftovers = leftover_removal(kind, &serde_json::to_value(&after)?);
    if !leftovers.is_empty() {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(leftovers))?;
        target_api(&ctx.client, kind, namespace)
            .patch(target, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        tracing::info!(tablesnap = %ts.name_any(), kind = kind.as_str(), target, "removed what another field manager kept of the sidecar");
    }
    ctx.metrics
        .applies
        .get_or_create(&ActionLabel { action: "remove" })
        .inc();
    tracing::info!(tablesnap = %ts.name_any(), kind = kind.as_str(), target, "removed the tablesnap sidecar");
    publish(
        ctx,
        ts,
        EventType::Normal,
        "Removed",
        format!(
            "removed the tablesnap sidecar from {} {target}",
            kind.as_str()
        ),
        target_ref(kind, namespace, target),
    )
    .await;
    Ok(())
}

/// Write the status through the status subresource, server-side apply under our field manager.
pub async fn patch_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &TableSnapStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": TableSnap::api_version(&()),
        "kind": TableSnap::kind(&()),
        "metadata": {"name": name, "namespace": namespace},
        "status": status,
    });
    Api::<TableSnap>::namespaced(client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn outcome<'a>(plan: &'a Plan, kind: TargetKind, name: &str) -> &'a Outcome {
        &plan
            .targets
            .iter()
            .find(|p| p.kind == kind && p.name == name)
            .unwrap_or_else(|| panic!("{name} not planned"))
            .outcome
    }

    #[test]
    fn plan_over_all_samples() {
        let ts = samples::tablesnap();
        let plan = plan(
            &ts,
            std::slice::from_ref(&ts),
            &samples::statefulsets(),
            &samples::datacenters(),
        );
        let names: Vec<&str> = plan.targets.iter().map(|p| p.name.as_str()).collect();
        // cass-operator's StatefulSet is left out because its CassandraDatacenter dc1 is selected.
        assert_eq!(
            names,
            ["cassandra", "cass-manual", "cass-ephemeral", "dc1", "dc2"]
        );
        assert!(matches!(
            outcome(&plan, TargetKind::StatefulSet, "cassandra"),
            Outcome::Apply {
                up_to_date: false,
                ..
            }
        ));
        assert!(matches!(
            outcome(&plan, TargetKind::CassandraDatacenter, "dc1"),
            Outcome::Apply { .. }
        ));
        let Outcome::Apply { pod_selector, .. } =
            outcome(&plan, TargetKind::CassandraDatacenter, "dc1")
        else {
            unreachable!()
        };
        assert_eq!(pod_selector, "cassandra.datastax.com/datacenter=dc1");
        let Outcome::Apply { pod_selector, .. } =
            outcome(&plan, TargetKind::StatefulSet, "cassandra")
        else {
            unreachable!()
        };
        assert_eq!(
            pod_selector,
            "app.kubernetes.io/instance=cassandra,app.kubernetes.io/name=cassandra"
        );
        assert!(
            matches!(outcome(&plan, TargetKind::StatefulSet, "cass-ephemeral"), Outcome::Skip(p) if p.reason == "DataVolumeNotFound")
        );
        assert!(
            matches!(outcome(&plan, TargetKind::CassandraDatacenter, "dc2"), Outcome::Skip(p) if p.reason == "ManagedByK8ssandra")
        );
        assert!(plan.removals.is_empty());
    }

    #[test]
    fn applied_target_is_up_to_date_and_unselected_one_is_removed() {
        let ts = samples::tablesnap();
        let mut statefulsets = samples::statefulsets();
        let first = plan(&ts, std::slice::from_ref(&ts), &statefulsets, &[]);
        let Outcome::Apply { body, .. } = outcome(&first, TargetKind::StatefulSet, "cassandra")
        else {
            panic!()
        };
        let patched = render::merged(&serde_json::to_value(&statefulsets[1]).unwrap(), body);
        statefulsets[1] = serde_json::from_value(patched).unwrap();
        let second = plan(&ts, std::slice::from_ref(&ts), &statefulsets, &[]);
        assert!(matches!(
            outcome(&second, TargetKind::StatefulSet, "cassandra"),
            Outcome::Apply {
                up_to_date: true,
                ..
            }
        ));

        // A spec change makes it stale again.
        let mut changed = ts.clone();
        changed.spec.prefix = Some("other".into());
        let third = plan(&changed, std::slice::from_ref(&changed), &statefulsets, &[]);
        assert!(matches!(
            outcome(&third, TargetKind::StatefulSet, "cassandra"),
            Outcome::Apply {
                up_to_date: false,
                ..
            }
        ));

        // The label goes away: the target is removed, not skipped.
        statefulsets[1]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove("backup");
        let fourth = plan(&ts, std::slice::from_ref(&ts), &statefulsets, &[]);
        assert_eq!(
            fourth.removals,
            [(TargetKind::StatefulSet, "cassandra".to_owned())]
        );
    }

    #[test]
    fn the_newer_tablesnap_reports_a_conflict() {
        let older = samples::tablesnap();
        let mut newer = samples::tablesnap();
        newer.metadata.name = Some("hourly".into());
        newer.metadata.creation_timestamp = Some(Time("2026-03-01T00:00:00Z".parse().unwrap()));
        let all = [older.clone(), newer.clone()];
        let statefulsets = samples::statefulsets();
        let p = plan(&newer, &all, &statefulsets, &[]);
        let Outcome::Skip(problem) = outcome(&p, TargetKind::StatefulSet, "cassandra") else {
            panic!("expected a conflict")
        };
        assert_eq!(problem.reason, "Conflict");
        assert!(
            problem.message.contains("older TableSnap nightly"),
            "{}",
            problem.message
        );
        assert!(matches!(
            outcome(
                &plan(&older, &all, &statefulsets, &[]),
                TargetKind::StatefulSet,
                "cassandra"
            ),
            Outcome::Apply { .. }
        ));
    }

    /// Issue 13 (mutation testing): the dry run's verdict. A user's entry the apply would drop
    /// (an atomic list) is named; the sidecar kept without `restartPolicy: Always` is refused even
    /// when another init container of the user's has that policy.
    #[test]
    fn the_dry_run_refuses_lost_entries_and_a_sidecar_without_its_restart_policy() {
        let before = serde_json::json!({
            "containers": [{"name": "cassandra"}],
            "initContainers": [{"name": "user-sidecar", "restartPolicy": "Always"}],
            "volumes": [{"name": "data"}],
        });
        let after = |sidecar: Value, init_user: bool| {
            let mut init = vec![sidecar];
            if init_user {
                init.insert(
                    0,
                    serde_json::json!({"name": "user-sidecar", "restartPolicy": "Always"}),
                );
            }
            serde_json::json!({
                "containers": [{"name": "cassandra"}],
                "initContainers": init,
                "volumes": [{"name": "data"}, {"name": SCRATCH_VOLUME}],
            })
        };
        let native = serde_json::json!({"name": SIDECAR_NAME, "restartPolicy": "Always"});
        let plain = serde_json::json!({"name": SIDECAR_NAME});
        let verdict = |after: &Value| dry_run_problem("dc1", Some(&before), Some(after));

        assert!(verdict(&after(native.clone(), true)).is_none());
        let lost = verdict(&after(native, false)).expect("the user's init container is lost");
        assert_eq!(lost.reason, "PodTemplateListsNotMergeable");
        assert!(
            lost.message.contains("initContainers[user-sidecar]"),
            "{}",
            lost.message
        );
        let dropped = verdict(&after(plain, true)).expect("the sidecar lost its restartPolicy");
        assert_eq!(dropped.reason, "NativeSidecarUnsupported");
        assert!(
            dropped.message.starts_with("CassandraDatacenter dc1:"),
            "{}",
            dropped.message
        );
        let gone = verdict(&after(serde_json::json!({"name": "other"}), true));
        assert_eq!(gone.map(|p| p.reason), Some("NativeSidecarUnsupported"));
        assert!(
            dry_run_problem("dc1", None, None).is_some(),
            "no pod spec after: no sidecar"
        );
    }
}
