//! The agent on a cluster: the policy objects the watcher brings, enforced through the same
//! paths as files, and their status.

use super::*;

/// Applies the policy objects the cluster added, changed or deleted since the last turn, and
/// sends what this node did with vigil's own objects to their status. Objects refused are tried
/// again once a policy goes (what refused them, a name or room taken, may have gone with it).
pub(super) fn apply_policy_objects(
    k: &mut Kubernetes,
    p: &mut PolicyManager,
    sensor: &mut LoadedObject,
) {
    use crate::k8s::policy_objects::PolicyObject;
    let mut removed = false;
    while let Ok(object) = k.policy_objects.try_recv() {
        match object {
            PolicyObject::Deleted { source } => {
                k.refused.remove(&source);
                p.remove_object(sensor, &source);
                removed = true;
            }
            PolicyObject::Listed { resource } => {
                k.listed.insert(resource);
            }
            applied => apply_policy_object(k, p, sensor, applied),
        }
    }
    if removed {
        for (_, object) in std::mem::take(&mut k.refused) {
            apply_policy_object(k, p, sensor, object);
        }
    }
}

fn apply_policy_object(
    k: &mut Kubernetes,
    p: &mut PolicyManager,
    sensor: &mut LoadedObject,
    object: crate::k8s::policy_objects::PolicyObject,
) {
    use crate::k8s::policy_objects::{PolicyObject, StatusUpdate};
    let PolicyObject::Applied {
        source,
        text,
        namespace,
        status,
    } = &object
    else {
        return;
    };
    let outcome = p.apply_object(sensor, source, text, namespace.as_deref());
    let (state, message) = match outcome {
        Ok(a) if a.loaded => ("loaded", a.said),
        Ok(a) => ("not-selected", a.said),
        Err(reason) => ("refused", reason),
    };
    if state == "refused" {
        k.refused.insert(source.clone(), object.clone());
    } else {
        k.refused.remove(source);
    }
    if let Some(target) = status.clone() {
        let _ = k.statuses.send(StatusUpdate {
            target,
            state,
            message,
        });
    }
}
