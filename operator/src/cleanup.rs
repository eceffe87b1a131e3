//! Deleting a TableSnap: remove exactly the fields the operator applied, from every object whose
//! pod template says this TableSnap injected it.

use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::apply::{Context, list_targets, remove_from};
use crate::crd::{TableSnap, TargetKind};
use crate::error::Result;
use crate::render::{FIELD_MANAGER, OWNER_ANNOTATION};
use crate::resolve::Candidate;

/// Targets whose pod template names `tablesnap` as the injector.
pub fn injected_by(
    tablesnap: &str,
    statefulsets: &[k8s_openapi::api::apps::v1::StatefulSet],
    datacenters: &[kube::api::DynamicObject],
) -> Vec<(TargetKind, String)> {
    statefulsets
        .iter()
        .map(Candidate::StatefulSet)
        .chain(datacenters.iter().map(Candidate::Datacenter))
        .filter(|c| {
            c.template_annotations()
                .get(OWNER_ANNOTATION)
                .map(String::as_str)
                == Some(tablesnap)
                && c.managed_by(FIELD_MANAGER)
        })
        .map(|c| (c.kind(), c.name()))
        .collect()
}

/// Remove this TableSnap's sidecar everywhere; the finalizer is dropped only after this succeeds.
pub async fn cleanup(ts: &TableSnap, ctx: &Context) -> Result<Action> {
    let namespace = ts.namespace().unwrap_or_default();
    let (statefulsets, datacenters) = list_targets(&ctx.client, &namespace).await?;
    for (kind, target) in injected_by(&ts.name_any(), &statefulsets, &datacenters) {
        remove_from(ctx, ts, kind, &namespace, &target).await?;
    }
    Ok(Action::await_change())
}
