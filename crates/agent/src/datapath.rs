//! Loading, attaching and programming the socket load balancer.
//!
//! ```text
//!   pin_dir/                      (on bpffs)
//!     portico_svc, portico_be, portico_rnat     maps, pinned by name: adopted on restart
//!     links/portico_connect4, ...               cgroup links, pinned: the programs stay
//!                                               attached while no agent runs
//! ```
//!
//! A restarted agent loads the same programs against the pinned maps, attaches them next to
//! the previous ones (cgroup multi-attach) and only then detaches the previous ones by
//! replacing their pins: at every moment at least one copy of each program is attached,
//! and both read the same maps. Established connections never depend on the agent: their
//! sockets were rewritten when they connected.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, MapError};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, ProgramError};
use aya::{Ebpf, EbpfLoader, pin::PinError};
use tracing::{debug, info, warn};

use crate::bpffs;
use crate::maps::{BACKEND_SLOTS, BACKENDS_MAP, Backend, SERVICES_MAP, SvcKey, SvcValue};
use crate::programs::{PROGRAMS, SOCK_LB};
use crate::service::{EntryError, Frontend, ServiceEntry};
use crate::slots::Slots;

/// Why the datapath could not be loaded or programmed.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{} is not on a BPF filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)", path.display())]
    NotBpffs { path: PathBuf },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("loading the BPF object: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    #[error("the BPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("link of {name}: {source}")]
    Link {
        name: &'static str,
        source: LinkError,
    },
    #[error("pinning the link of {name}: {source}")]
    Pin {
        name: &'static str,
        source: PinError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: Box<MapError>,
    },
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(
        "{frontend}: needs {needed} consecutive backend slots, none free ({available} free in all)"
    )]
    NoSlots {
        frontend: Frontend,
        needed: u32,
        available: u32,
    },
}

pub(crate) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map {
        name,
        source: Box::new(source),
    }
}

/// Whether a map operation failed because the key was not there: aya reports a missing
/// key on lookup as `KeyNotFound`, but on delete as the syscall's ENOENT.
pub(crate) fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(2),
        _ => false,
    }
}

pub(crate) fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

/// What [`Datapath::sync`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// The loaded and attached socket load balancer, and the maps it reads.
#[derive(Debug)]
pub struct Datapath {
    services: HashMap<MapData, SvcKey, SvcValue>,
    backends: HashMap<MapData, u32, Backend>,
    slots: Slots,
    /// What the maps hold, as last written or adopted: [`Datapath::sync`] diffs against it,
    /// so that a change to one Service writes that Service only (no map read per sync).
    programmed: BTreeMap<Frontend, ServiceEntry>,
    // Held so that the links stay ours until the pins replace them; dropping them leaves
    // the programs attached through the pins.
    _links: Vec<PinnedLink>,
    _ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Datapath {
    /// Loads the programs, attaches them to the cgroup v2 directory `cgroup` (every
    /// process in it and below is balanced), and adopts the maps pinned in `pin_dir` by a
    /// previous agent, or pins new ones there. `pin_dir` must be on a bpffs.
    pub fn load(pin_dir: &Path, cgroup: &Path) -> Result<Self, DatapathError> {
        let links_dir = prepare_pin_dir(pin_dir)?;
        let cgroup_file = File::open(cgroup).map_err(|source| DatapathError::Io {
            what: "opening cgroup",
            path: cgroup.to_path_buf(),
            source,
        })?;

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(SOCK_LB)
            .map_err(Box::new)?;

        let mut links = Vec::with_capacity(PROGRAMS.len());
        for &name in PROGRAMS {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(prog_err(name))?;
            program.load().map_err(prog_err(name))?;
            // Through a BPF link (what aya uses on kernels since 5.7) a cgroup attachment
            // is always one of many; the kernel rejects any other mode flag with EINVAL.
            let id = program
                .attach(&cgroup_file, CgroupAttachMode::Single)
                .map_err(prog_err(name))?;
            let link: FdLink = program
                .take_link(id)
                .map_err(prog_err(name))?
                .try_into()
                .map_err(|source| DatapathError::Link { name, source })?;
            links.push(replace_pinned_link(&links_dir.join(name), name, link)?);
        }

        let services: HashMap<MapData, SvcKey, SvcValue> = take_map(&mut ebpf, SERVICES_MAP)?;
        let backends: HashMap<MapData, u32, Backend> = take_map(&mut ebpf, BACKENDS_MAP)?;
        let mut datapath = Datapath {
            services,
            backends,
            slots: Slots::new(BACKEND_SLOTS),
            programmed: BTreeMap::new(),
            _links: links,
            _ebpf: ebpf,
            pin_dir: pin_dir.to_path_buf(),
        };
        datapath.adopt()?;
        info!(pin_dir = %pin_dir.display(), cgroup = %cgroup.display(), "socket load balancer attached");
        Ok(datapath)
    }

    /// The directory the maps and links are pinned in.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Rebuilds the slot allocator from the services a previous agent left, and deletes
    /// backend slots no service points at (an agent that died between writing a new run
    /// and switching its service over).
    fn adopt(&mut self) -> Result<(), DatapathError> {
        // start -> end of every adopted run, to tell orphan slots from used ones.
        let mut runs = BTreeMap::new();
        for item in self.services.iter() {
            let (key, value) = item.map_err(map_err(SERVICES_MAP))?;
            let run = value.offset..value.offset.saturating_add(value.count);
            if self.slots.reserve(run.clone()) {
                runs.insert(run.start, run.end);
            } else {
                warn!(frontend = %key.frontend(), ?run, "adopted service overlaps another's slots");
            }
        }
        let in_use = |slot: u32| {
            runs.range(..=slot)
                .next_back()
                .is_some_and(|(_, &end)| slot < end)
        };
        let orphans: Vec<u32> = self
            .backends
            .keys()
            .filter_map(Result::ok)
            .filter(|&slot| !in_use(slot))
            .collect();
        for slot in &orphans {
            self.backends.remove(slot).map_err(map_err(BACKENDS_MAP))?;
        }
        self.programmed = self.list()?.into_iter().map(|e| (e.frontend, e)).collect();
        if !runs.is_empty() || !orphans.is_empty() {
            info!(
                services = runs.len(),
                orphan_slots = orphans.len(),
                "adopted pinned maps"
            );
        }
        Ok(())
    }

    /// Programs `entry`, replacing the service with the same frontend if there is one.
    /// New connections use the new backends at once; established ones are untouched.
    pub fn upsert_service(&mut self, entry: &ServiceEntry) -> Result<(), DatapathError> {
        let key = entry.frontend.key();
        let old = self.lookup(&key)?;
        if let Some((_, current)) = &old
            && current == entry
        {
            debug!(frontend = %entry.frontend, "service unchanged");
            return Ok(());
        }
        let needed = u32::try_from(entry.slot_count()).unwrap_or(u32::MAX);
        let run = self.slots.alloc(needed).ok_or(DatapathError::NoSlots {
            frontend: entry.frontend,
            needed,
            available: self.slots.available(),
        })?;
        let written = self.write_run(entry, run.clone());
        let value = match written {
            Ok(value) => value,
            Err(e) => {
                self.release(run);
                return Err(e);
            }
        };
        if let Err(e) = self.services.insert(key, value, 0) {
            self.release(run);
            return Err(map_err(SERVICES_MAP)(e));
        }
        if let Some((old_value, _)) = old {
            self.release(old_value.offset..old_value.offset + old_value.count);
        }
        self.programmed.insert(entry.frontend, entry.clone());
        debug!(frontend = %entry.frontend, backends = value.count, "service programmed");
        Ok(())
    }

    /// Writes the backends of `entry` into `run` and returns the service value pointing
    /// at them.
    fn write_run(
        &mut self,
        entry: &ServiceEntry,
        run: std::ops::Range<u32>,
    ) -> Result<SvcValue, DatapathError> {
        let (_, value, slots) = entry.encode(run.start)?;
        for (slot, backend) in run.zip(slots) {
            self.backends
                .insert(slot, backend, 0)
                .map_err(map_err(BACKENDS_MAP))?;
        }
        Ok(value)
    }

    /// Deletes the slots of `run` from the map and returns them to the allocator.
    fn release(&mut self, run: std::ops::Range<u32>) {
        for slot in run.clone() {
            match self.backends.remove(&slot) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => warn!(slot, error = %e, "deleting a backend slot"),
            }
        }
        self.slots.free(run);
    }

    /// Removes the service dialled at `frontend`; connects to it are no longer
    /// translated. Returns whether there was one.
    pub fn delete_service(&mut self, frontend: &Frontend) -> Result<bool, DatapathError> {
        let key = frontend.key();
        let value = match self.services.get(&key, 0) {
            Ok(value) => value,
            Err(MapError::KeyNotFound) => {
                self.programmed.remove(frontend);
                return Ok(false);
            }
            Err(e) => return Err(map_err(SERVICES_MAP)(e)),
        };
        self.services.remove(&key).map_err(map_err(SERVICES_MAP))?;
        self.programmed.remove(frontend);
        self.release(value.offset..value.offset + value.count);
        debug!(%frontend, "service deleted");
        Ok(true)
    }

    /// The service stored under `key` and its decoded entry.
    fn lookup(&self, key: &SvcKey) -> Result<Option<(SvcValue, ServiceEntry)>, DatapathError> {
        let value = match self.services.get(key, 0) {
            Ok(value) => value,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(map_err(SERVICES_MAP)(e)),
        };
        let backends = self.read_run(&value)?;
        Ok(ServiceEntry::decode(key, &value, &backends).map(|e| (value, e)))
    }

    fn read_run(&self, value: &SvcValue) -> Result<Vec<Backend>, DatapathError> {
        read_run(&self.backends, value)
    }

    /// Every programmed service, sorted by frontend.
    pub fn list(&self) -> Result<Vec<ServiceEntry>, DatapathError> {
        list_maps(&self.services, &self.backends)
    }

    /// The number of services programmed, as this agent knows them.
    pub fn service_count(&self) -> usize {
        self.programmed.len()
    }

    /// The number of backend slots in use.
    pub fn backend_count(&self) -> u32 {
        BACKEND_SLOTS - self.slots.available()
    }

    /// Makes the programmed services exactly `desired`, writing only those that differ
    /// from what this agent programmed (or adopted) last: an unchanged Service costs no
    /// map access at all.
    pub fn sync(&mut self, desired: &[ServiceEntry]) -> Result<SyncStats, DatapathError> {
        let plan = plan_sync(&self.programmed, desired);
        for entry in &plan.upserts {
            self.upsert_service(entry)?;
        }
        for frontend in &plan.removals {
            self.delete_service(frontend)?;
        }
        Ok(plan.stats)
    }
}

/// What [`Datapath::sync`] must write to go from `current` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncPlan {
    pub(crate) upserts: Vec<ServiceEntry>,
    pub(crate) removals: Vec<Frontend>,
    pub(crate) stats: SyncStats,
}

/// The diff of `current` and `desired`; of two desired entries with one frontend, the
/// last wins.
pub(crate) fn plan_sync(
    current: &BTreeMap<Frontend, ServiceEntry>,
    desired: &[ServiceEntry],
) -> SyncPlan {
    let wanted: BTreeMap<Frontend, &ServiceEntry> =
        desired.iter().map(|e| (e.frontend, e)).collect();
    let mut plan = SyncPlan::default();
    for (frontend, entry) in &wanted {
        match current.get(frontend) {
            Some(have) if have == *entry => plan.stats.unchanged += 1,
            Some(_) => {
                plan.upserts.push((*entry).clone());
                plan.stats.updated += 1;
            }
            None => {
                plan.upserts.push((*entry).clone());
                plan.stats.added += 1;
            }
        }
    }
    for frontend in current.keys().filter(|f| !wanted.contains_key(f)) {
        plan.removals.push(*frontend);
        plan.stats.removed += 1;
    }
    plan
}

/// Makes sure `pin_dir` and its `links/` exist on a bpffs; returns `links/`.
pub(crate) fn prepare_pin_dir(pin_dir: &Path) -> Result<PathBuf, DatapathError> {
    let links_dir = pin_dir.join("links");
    fs::create_dir_all(&links_dir).map_err(|source| DatapathError::Io {
        what: "creating",
        path: links_dir.clone(),
        source,
    })?;
    let on_bpffs = bpffs::is_bpffs(pin_dir).map_err(|source| DatapathError::Io {
        what: "statfs",
        path: pin_dir.to_path_buf(),
        source,
    })?;
    if !on_bpffs {
        return Err(DatapathError::NotBpffs {
            path: pin_dir.to_path_buf(),
        });
    }
    Ok(links_dir)
}

/// Pins `link` at `path`, taking the place of a link a previous agent pinned there. The
/// new link is attached before the old one is let go, so the hook is never empty.
pub(crate) fn replace_pinned_link(
    path: &Path,
    name: &'static str,
    link: FdLink,
) -> Result<PinnedLink, DatapathError> {
    let previous = match PinnedLink::from_pin(path) {
        Ok(pinned) => Some(pinned.unpin().map_err(|source| DatapathError::Io {
            what: "unpinning",
            path: path.to_path_buf(),
            source,
        })?),
        Err(_) if !path.exists() => None,
        Err(e) => {
            // Not a link (a leftover file): remove it so that our pin can take its place.
            warn!(path = %path.display(), error = %e, "replacing an unreadable pin");
            fs::remove_file(path).map_err(|source| DatapathError::Io {
                what: "removing",
                path: path.to_path_buf(),
                source,
            })?;
            None
        }
    };
    let pinned = link
        .pin(path)
        .map_err(|source| DatapathError::Pin { name, source })?;
    // Closing the last reference to the previous link detaches its program.
    drop(previous);
    Ok(pinned)
}

pub(crate) fn take_map<V>(ebpf: &mut Ebpf, name: &'static str) -> Result<V, DatapathError>
where
    V: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    V::try_from(map).map_err(map_err(name))
}

fn read_run(
    backends: &HashMap<MapData, u32, Backend>,
    value: &SvcValue,
) -> Result<Vec<Backend>, DatapathError> {
    (value.offset..value.offset.saturating_add(value.count))
        .map(|slot| backends.get(&slot, 0).map_err(map_err(BACKENDS_MAP)))
        .collect()
}

fn list_maps(
    services: &HashMap<MapData, SvcKey, SvcValue>,
    backends: &HashMap<MapData, u32, Backend>,
) -> Result<Vec<ServiceEntry>, DatapathError> {
    let mut entries = Vec::new();
    for item in services.iter() {
        let (key, value) = item.map_err(map_err(SERVICES_MAP))?;
        let run = read_run(backends, &value)?;
        if let Some(entry) = ServiceEntry::decode(&key, &value, &run) {
            entries.push(entry);
        }
    }
    entries.sort();
    Ok(entries)
}

/// The services programmed in the maps pinned under `pin_dir`, read without loading or
/// attaching anything (what `portico lb list` shows).
pub fn list_pinned(pin_dir: &Path) -> Result<Vec<ServiceEntry>, DatapathError> {
    let open = |name: &'static str| {
        MapData::from_pin(pin_dir.join(name))
            .and_then(aya::maps::Map::from_map_data)
            .map_err(map_err(name))
    };
    let services: HashMap<MapData, SvcKey, SvcValue> =
        HashMap::try_from(open(SERVICES_MAP)?).map_err(map_err(SERVICES_MAP))?;
    let backends: HashMap<MapData, u32, Backend> =
        HashMap::try_from(open(BACKENDS_MAP)?).map_err(map_err(BACKENDS_MAP))?;
    list_maps(&services, &backends)
}

/// Removes everything pinned under `pin_dir`: the maps and the links, which detaches the
/// programs once no agent holds them. For uninstalling, and for tests' clean-up.
pub fn remove_pinned(pin_dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::service::{BackendEntry, Protocol};

    fn entry(vip: &str, backends: &[&str]) -> ServiceEntry {
        ServiceEntry {
            frontend: Frontend::new(vip.parse().unwrap(), Protocol::Tcp),
            flags: 0,
            backends: backends
                .iter()
                .map(|b| BackendEntry {
                    addr: b.parse().unwrap(),
                    weight: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn sync_plans_writes_for_changed_services_only() {
        let kept = entry("10.96.0.1:80", &["10.0.0.1:80"]);
        let changed = entry("10.96.0.2:80", &["10.0.0.2:80"]);
        let gone = entry("10.96.0.3:80", &["10.0.0.3:80"]);
        let current: BTreeMap<Frontend, ServiceEntry> = [&kept, &changed, &gone]
            .into_iter()
            .map(|e| (e.frontend, e.clone()))
            .collect();
        let changed_now = entry("10.96.0.2:80", &["10.0.0.2:80", "10.0.0.4:80"]);
        let new = entry("10.96.0.5:80", &[]);
        let plan = plan_sync(&current, &[kept, changed_now.clone(), new.clone()]);
        assert_eq!(plan.upserts, [changed_now, new]);
        assert_eq!(plan.removals, [gone.frontend]);
        assert_eq!(
            plan.stats,
            SyncStats {
                added: 1,
                updated: 1,
                removed: 1,
                unchanged: 1
            }
        );
    }
}
