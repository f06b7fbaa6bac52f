//! What earlier agents left pinned: retired once this agent's programs are attached, or
//! removed by `vigil agent --cleanup`.

use super::*;

/// Retires what earlier agents left pinned, once this agent's programs are attached, and says
/// what their programs wrote while no agent read it.
pub(super) fn retire_previous(sensor: &LoadedObject) -> Vec<Retired> {
    let mut retired = Vec::new();
    for r in sensor.pins().retire_others() {
        match r {
            Ok(r) if r.running => {
                log(format!(
                    "took over from an agent still running ({}, version {}): its {} links detach when it stops; it reads and reports its own records",
                    r.generation, r.abi, r.links
                ));
                retired.push(r);
            }
            Ok(r) => {
                log(format!(
                    "replaced the enforcement an earlier agent left pinned ({}, version {}): its {} links detached after this agent's were attached; {} records lost while no agent read them ({} left in its ring buffer, {} it could not queue)",
                    r.generation, r.abi, r.links, r.lost(), r.unread, r.dropped
                ));
                retired.push(r);
            }
            Err(e) => log(format!("cannot remove what an earlier agent pinned: {e}")),
        }
    }
    retired
}

/// `vigil agent --cleanup`: removes everything pinned in `dir`, detaching what an earlier agent
/// left attached.
pub fn cleanup(dir: &std::path::Path) -> Result<()> {
    // Nothing to mount: where bpffs is not mounted, nothing is pinned.
    system::check_privileges()?;
    let retired = pins::cleanup(dir)?;
    if retired.is_empty() {
        log(format!("nothing pinned in {}", dir.display()));
    }
    for r in retired {
        let r = r?;
        log(format!(
            "removed {}: {} links detached; {} records lost while no agent read them ({} left in its ring buffer, {} it could not queue)",
            r.generation, r.links, r.lost(), r.unread, r.dropped
        ));
    }
    Ok(())
}
