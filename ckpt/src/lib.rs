//! # ckpt: SA Forum checkpoints in shared memory
//!
//! A *checkpoint* is a named table of *sections* (section id → bytes) that a
//! redundant application's active process writes its crucial state into, so
//! that a standby can take over with that state intact. ckpt implements the SA
//! Forum AIS checkpoint semantics (SAI-AIS-CKPT-B.01.01) with one difference
//! that matters: the active process writes **directly into a shared-memory
//! segment** (no daemon round trip, no syscall, no lock on the write path),
//! and standbys on the host map the same segment.
//!
//! ```
//! use ckpt::{CreationAttributes, OpenFlags, Service, Time};
//! # let dir = tempfile::tempdir().unwrap();
//! # let service = Service::with_config(ckpt::Config::with_dir(dir.path()));
//! // let service = Service::new();   // segments under $CKPT_DIR or /dev/shm/ckpt
//! let attrs = CreationAttributes::new(2, 8);
//! let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
//! let active = service.open("safCkpt=csa103Ckpt", flags, Some(&attrs)).unwrap();
//! active.set_active_replica().unwrap();
//! let seq = active.create_section(b"1", Time::END, &0u64.to_be_bytes()).unwrap();
//! seq.overwrite(&1u64.to_be_bytes()).unwrap();          // straight into shared memory
//!
//! let standby = service.open("safCkpt=csa103Ckpt", OpenFlags::READ, None).unwrap();
//! assert_eq!(standby.read_section(b"1").unwrap(), 1u64.to_be_bytes());
//! ```
//!
//! Every operation returns its own error enum from [`ckpt_core::error`]; each
//! variant maps to one `SaAisErrorT` code (`.ais()`), which the C library
//! returns unchanged.
#![forbid(unsafe_code)]

pub mod control;
mod follow;
pub mod forward;
pub mod membership;
pub mod node;
pub mod replication;
pub mod seal;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

pub use ckpt_core::error::{
    ActiveReplicaSetError, ExpirationSetError, IterationError, LookupError, OpenError, ReadError,
    RetentionSetError, SectionCreateError, SectionDeleteError, StatusError, SynchronizeError,
    UnlinkError, WriteError,
};
pub use ckpt_core::frame::Mutation;
pub use ckpt_core::{
    AisError, CheckpointName, CheckpointStatus, CreationAttributes, CreationFlags, OpenFlags,
    SectionDescriptor, SectionId, SectionState, SectionsChosen, Time, UpdateMode,
};
pub use ckpt_shm::log::LogError as WatchError;
pub use ckpt_shm::ops::{thread_frames, thread_frames_reset};
pub use ckpt_shm::{Config, SpareBuffer};

use ckpt_core::frame::{ForwardElement, ForwardOp, FrameKind, FLAG_MORE, FLAG_STAGED};
use ckpt_shm::ack::Need;
use ckpt_shm::slot::ReadFail;
use ckpt_shm::{SectionRef, Segment, WriteElement};

/// How long [`Service::open`] waits for a replica from another node
/// ([`Service::open_within`]).
pub const OPEN_WAIT: Duration = Duration::from_secs(10);

/// How long [`Service::unlink`] waits for the primary's node to unlink a
/// checkpoint this host holds no copy of, or only a replica of.
pub const UNLINK_WAIT: Duration = Duration::from_secs(10);

/// The result of an unlink the primary's node answered with SA error
/// `code`.
fn unlink_result(code: u32) -> Result<(), UnlinkError> {
    use UnlinkError as E;
    if code == ckpt_core::ais::SA_AIS_OK {
        return Ok(());
    }
    [
        E::NotExist,
        E::Permission,
        E::Io,
        E::TryAgain,
        E::NoResources,
        E::Timeout,
    ]
    .into_iter()
    .find(|e| e.ais().code() == code)
    .map_or(Err(E::TryAgain), Err)
}

/// The checkpoint service of one host: where segments live.
///
/// ```
/// use ckpt::{Config, CreationAttributes, OpenFlags, Service};
/// # let dir = tempfile::tempdir()?;
/// let service = Service::with_config(Config::with_dir(dir.path()));
/// let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// let active = service.open("safCkpt=svc", flags, Some(&CreationAttributes::new(2, 8)))?;
/// assert_eq!(active.name().as_bytes(), b"safCkpt=svc");
/// service.unlink("safCkpt=svc")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Service {
    config: Config,
}

impl Default for Service {
    fn default() -> Self {
        Self::new()
    }
}

impl Service {
    /// The service configured from the environment (`CKPT_DIR`, `CKPT_GROUP_ACCESS`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// std::env::set_var("CKPT_DIR", dir.path());
    /// std::env::set_var("CKPT_GROUP_ACCESS", "1");
    /// let service = ckpt::Service::new();
    /// assert_eq!(service.config().dir, dir.path());
    /// assert!(service.config().group_access); // segments created 0660
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self {
            config: Config::from_env(),
        }
    }

    /// The service with an explicit configuration.
    ///
    /// ```
    /// use ckpt::{Config, CreationAttributes, OpenError, OpenFlags, Service};
    /// # let (dir, other_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    /// let service = Service::with_config(Config::with_dir(dir.path()));
    /// let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// let _active = service.open("safCkpt=cfg", flags, Some(&CreationAttributes::new(2, 8)))?;
    /// // Another directory is another set of checkpoints.
    /// let other = Service::with_config(Config::with_dir(other_dir.path()));
    /// let missing = other.open("safCkpt=cfg", OpenFlags::READ, None);
    /// assert_eq!(missing.err(), Some(OpenError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_config(config: Config) -> Self {
        Self { config }
    }

    /// The configuration.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let config = ckpt::Config::with_dir(dir.path());
    /// let service = ckpt::Service::with_config(config);
    /// assert_eq!(service.config().dir, dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens checkpoint `name` (`saCkptCheckpointOpen`). With `CREATE` and
    /// `attrs`, creates it if absent; if it exists, the attributes must match
    /// (a different retention duration alone is accepted).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// use ckpt::OpenError;
    /// let attrs = CreationAttributes::new(4, 16);
    /// let _active = service.open("safCkpt=open", rwc, Some(&attrs))?;
    /// let standby = service.open("safCkpt=open", OpenFlags::READ, None)?;
    /// assert_eq!(standby.attributes(), attrs);
    /// // Attributes that differ in more than the retention are refused.
    /// let other = CreationAttributes::new(8, 16);
    /// let e = service.open("safCkpt=open", rwc, Some(&other)).err();
    /// assert_eq!(e, Some(OpenError::AttributesDiffer));
    /// let e = service.open("safCkpt=none", OpenFlags::READ, None).err();
    /// assert_eq!(e, Some(OpenError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(
        &self,
        name: impl AsRef<[u8]>,
        flags: OpenFlags,
        attrs: Option<&CreationAttributes>,
    ) -> Result<Checkpoint, OpenError> {
        self.open_within(name, flags, attrs, OPEN_WAIT)
    }

    /// [`Service::open`], waiting at most `wait` for a replica from another
    /// node (`saCkptCheckpointOpen`'s timeout).
    ///
    /// When the checkpoint is not on this host and a node daemon runs for
    /// the segment directory (it answers on [`control::CONTROL_NAME`]
    /// there), the open first asks it: if a peer holds the checkpoint (a
    /// collocated one, or one placed on other nodes, is not replicated here
    /// until a process here opens it), its replica comes here and the open
    /// opens it, with or without `CREATE`; if it does not come within
    /// `wait`, the open fails with [`OpenError::Timeout`] rather than
    /// create a second checkpoint of that name. With no daemon, or one that
    /// knows of no such checkpoint, the open goes on here (`NotExist`, or a
    /// new checkpoint with `CREATE`).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service};
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// // No daemon here: as `open`.
    /// let e = service.open_within("safCkpt=far", OpenFlags::READ, None, Duration::from_secs(1));
    /// assert_eq!(e.err(), Some(ckpt::OpenError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_within(
        &self,
        name: impl AsRef<[u8]>,
        flags: OpenFlags,
        attrs: Option<&CreationAttributes>,
        wait: Duration,
    ) -> Result<Checkpoint, OpenError> {
        let flags = OpenFlags::from_bits(flags.bits()).ok_or(OpenError::BadFlags)?;
        let name = CheckpointName::new(name).map_err(|_| OpenError::InvalidName)?;
        let create = flags.contains(OpenFlags::CREATE);
        match (create, attrs) {
            (true, None) => return Err(OpenError::MissingAttributes),
            (false, Some(_)) => return Err(OpenError::UnexpectedAttributes),
            _ => {}
        }
        if let Some(a) = attrs {
            a.validate().map_err(OpenError::from)?;
        }
        let mut daemon = false;
        if !ckpt_shm::dir::is_present(&self.config, &name) {
            // Not on this host: the node daemon, if one runs, may bring it.
            let wanted = control::ask_want(&self.config.dir, &name, wait, !create);
            if wanted == Some(control::Wanted::TimedOut) {
                return Err(OpenError::Timeout);
            }
            daemon = wanted.is_some();
        }
        // Created here with a daemon to ship it: a synchronous checkpoint's
        // writers wait for the replicas it places from the first write.
        let adopting;
        let config = if create && daemon {
            adopting = Config {
                daemon_adopts: true,
                ..self.config.clone()
            };
            &adopting
        } else {
            &self.config
        };
        let segment = Segment::open(config, &name, flags, attrs)?;
        Ok(Checkpoint {
            forwards: segment.is_replica(),
            files: follow::Files::new(segment),
            last_found: AtomicU64::new(0),
        })
    }

    /// True if this host holds a copy of checkpoint `name` (a primary or a
    /// replica): an open of it does not wait for the node daemon.
    pub fn holds(&self, name: impl AsRef<[u8]>) -> bool {
        CheckpointName::new(name).is_ok_and(|n| ckpt_shm::dir::is_present(&self.config, &n))
    }

    /// True if a node daemon's control socket is in this service's segment
    /// directory: an open of a checkpoint this host does not hold asks it
    /// (and may wait for a replica to come).
    pub fn has_daemon(&self) -> bool {
        control::socket(&self.config.dir).is_some()
    }

    /// Unlinks checkpoint `name` (`saCkptCheckpointUnlink`): the name is free at
    /// once; openers keep full access until their last close.
    ///
    /// Cluster-wide: where this host holds no copy of the checkpoint, or only
    /// a replica, the node daemon serving this directory (if any) has the
    /// primary's node unlink it, waiting up to [`UNLINK_WAIT`]
    /// (`UnlinkError::Timeout` after that).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::{OpenError, UnlinkError};
    /// active.create_section(b"k", Time::END, b"kept")?;
    /// service.unlink("safCkpt=doc")?;
    /// let reopen = service.open("safCkpt=doc", OpenFlags::READ, None);
    /// assert_eq!(reopen.err(), Some(OpenError::NotExist));
    /// assert_eq!(active.read_section(b"k")?, b"kept"); // the open handle still works
    /// assert_eq!(service.unlink("safCkpt=doc"), Err(UnlinkError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink(&self, name: impl AsRef<[u8]>) -> Result<(), UnlinkError> {
        let name = CheckpointName::new(name).map_err(|_| UnlinkError::InvalidName)?;
        let here = ckpt_shm::dir::unlink(&self.config, &name);
        if !matches!(here, Err(UnlinkError::NotExist | UnlinkError::Replica)) {
            return here;
        }
        // No copy here, or a replica: the primary is on another node, which
        // the node daemon (if one serves this directory) asks.
        match control::ask_unlink(&self.config.dir, &name, UNLINK_WAIT) {
            None => here,
            Some(control::Unlinked::Answered(code)) => unlink_result(code),
            // No peer offers it now, but this host holds a replica of it: its
            // primary is out of reach (a cut, its daemon down), not gone.
            Some(control::Unlinked::Unknown) if here == Err(UnlinkError::Replica) => here,
            Some(control::Unlinked::Unknown) => Err(UnlinkError::NotExist),
            Some(control::Unlinked::TimedOut) => Err(UnlinkError::Timeout),
        }
    }
}

/// An open checkpoint (`SaCkptCheckpointHandleT`). Dropping it closes it
/// (`saCkptCheckpointClose`).
///
/// ```
/// use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// let active = service.open("safCkpt=doc", flags, Some(&CreationAttributes::new(4, 16)))?;
/// active.set_active_replica()?;
/// active.create_section(b"state", Time::END, b"v1")?;
/// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
/// drop(active); // closes the active's handle
/// assert_eq!(standby.read_section(b"state")?, b"v1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Checkpoint {
    /// The file it is on, and the ones it was on before a snapshot rebuilt
    /// its replica (`follow.rs`).
    files: follow::Files,
    /// The section the last by-id call found (`slot << 32 | generation`, 0
    /// for none): the next call with the same id checks it instead of
    /// searching the index (a hint, confirmed every time).
    last_found: AtomicU64,
    /// Opened on a replica: its changes go to the primary ([`forward`]).
    /// A handle opened on a primary that is later deposed does not forward:
    /// its writer was the deposed active's, and is refused.
    forwards: bool,
}

impl Checkpoint {
    /// A checkpoint handle of the primary `segment` (opened for a link, not
    /// as an opener), through which a link makes the changes a replica's
    /// node forwards ([`forward`]).
    pub(crate) fn forwarded_to(segment: Segment) -> Checkpoint {
        Checkpoint {
            files: follow::Files::new(segment),
            last_found: AtomicU64::new(0),
            forwards: false,
        }
    }
}

/// How much longer than its timeout a synchronize from a replica's host
/// waits for the primary's answer (the request's way there and back).
const SYNCHRONIZE_SLACK: Duration = Duration::from_millis(200);

/// One element of [`Checkpoint::write`] (`SaCkptIOVectorElementT` for writes).
///
/// ```
/// use ckpt::WriteVec;
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// // A one-section checkpoint has the default section, whose id is empty.
/// let active = service.open("safCkpt=one", rwc, Some(&CreationAttributes::new(1, 16)))?;
/// active.set_active_replica()?;
/// let elements = [
///     WriteVec { id: b"", offset: 0, data: b"head" },
///     WriteVec { id: b"", offset: 4, data: b"-tail" },
/// ];
/// active.write(&elements).map_err(|(i, e)| format!("element {i}: {e}"))?;
/// assert_eq!(active.read_section(b"")?, b"head-tail");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WriteVec<'a> {
    /// The section (empty: the default section).
    pub id: &'a [u8],
    /// Where to write in the section.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// One element of [`Checkpoint::read`] (`SaCkptIOVectorElementT` for reads).
///
/// ```
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
/// # active.set_active_replica()?;
/// use ckpt::ReadVec;
/// active.create_section(b"a", Time::END, b"alpha")?;
/// active.create_section(b"b", Time::END, b"beta")?;
/// let (mut a, mut b) = ([0u8; 16], [0u8; 2]);
/// let mut elements = [
///     ReadVec { id: b"a", offset: 0, buf: &mut a, read_bytes: 0 },
///     ReadVec { id: b"b", offset: 2, buf: &mut b, read_bytes: 0 },
/// ];
/// active.read(&mut elements).map_err(|(i, e)| format!("element {i}: {e}"))?;
/// assert_eq!(elements[0].read_bytes, 5);
/// assert_eq!(&elements[1].buf[..elements[1].read_bytes], b"ta");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadVec<'a> {
    /// The section (empty: the default section).
    pub id: &'a [u8],
    /// Where to start reading.
    pub offset: u64,
    /// The destination; at most this many bytes are read.
    pub buf: &'a mut [u8],
    /// Out: bytes read.
    pub read_bytes: usize,
}

impl Checkpoint {
    /// The checkpoint's name.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let attrs = CreationAttributes::new(2, 8);
    /// # let _active = service.open("safCkpt=csa103Ckpt", rwc, Some(&attrs))?;
    /// let standby = service.open("safCkpt=csa103Ckpt", OpenFlags::READ, None)?;
    /// assert_eq!(standby.name().as_bytes(), b"safCkpt=csa103Ckpt");
    /// assert_eq!(standby.name().to_string(), "safCkpt=csa103Ckpt");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &CheckpointName {
        self.files.first().name()
    }

    /// The creation attributes.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// let attrs = CreationAttributes::new(4, 16);
    /// let _active = service.open("safCkpt=attrs", rwc, Some(&attrs))?;
    /// // An opener without CREATE learns the creator's attributes.
    /// let standby = service.open("safCkpt=attrs", OpenFlags::READ, None)?;
    /// assert_eq!(standby.attributes(), attrs);
    /// assert_eq!(standby.attributes().sections_max, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attributes(&self) -> CreationAttributes {
        *self.files.first().attributes()
    }

    /// The open flags.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// assert_eq!(standby.flags(), OpenFlags::READ);
    /// assert!(active.flags().contains(OpenFlags::WRITE));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flags(&self) -> OpenFlags {
        self.files.first().flags()
    }

    fn writable(&self) -> bool {
        self.files.first().flags().contains(OpenFlags::WRITE)
    }

    fn readable(&self) -> bool {
        self.files.first().flags().contains(OpenFlags::READ)
    }

    /// False for an asynchronous checkpoint that has no active replica yet:
    /// reads and writes then fail with `NOT_EXIST`.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// use ckpt::ReadError;
    /// let attrs = CreationAttributes::new(4, 16); // asynchronous and collocated
    /// let active = service.open("safCkpt=ar", rwc, Some(&attrs))?;
    /// assert!(!active.has_active_replica());
    /// assert_eq!(active.read_section(b"k"), Err(ReadError::NoActiveReplica));
    /// active.set_active_replica()?;
    /// assert!(active.has_active_replica());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_active_replica(&self) -> bool {
        self.has_active_replica_in(self.seg())
    }

    /// [`Checkpoint::has_active_replica`], as `segment` (the file the
    /// handle is on: a caller that has it looks once) says.
    #[inline]
    fn has_active_replica_in(&self, segment: &Segment) -> bool {
        !self.attributes().flags.mode().is_asynchronous() || segment.active_replica().is_some()
    }

    /// Sets the retention duration (`saCkptCheckpointRetentionDurationSet`).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::{OpenError, RetentionSetError};
    /// assert_eq!(active.set_retention(Time(-1)), Err(RetentionSetError::InvalidParam));
    /// // Retention 0: the checkpoint goes with its last close.
    /// active.set_retention(Time::from_secs(0))?;
    /// active.close();
    /// let reopen = service.open("safCkpt=doc", OpenFlags::READ, None);
    /// assert_eq!(reopen.err(), Some(OpenError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_retention(&self, retention: Time) -> Result<(), RetentionSetError> {
        if retention.0 < 0 {
            return Err(RetentionSetError::InvalidParam);
        }
        if self.seg().is_unlinked() {
            return Err(RetentionSetError::Unlinked);
        }
        if self.forwarding() {
            let none = ForwardElement::new(&[], 0, &[]);
            let op = ForwardOp::SetRetention;
            return forward::send_one(self, op, retention.0, none).map(drop);
        }
        self.seg()
            .set_retention(retention)
            .map_err(|_| RetentionSetError::TryAgain)
    }

    /// Makes this host's replica the active replica (`saCkptActiveReplicaSet`):
    /// collocated asynchronous checkpoints only; writes go through it. On a
    /// host whose copy is a replica of another host's primary (the node
    /// daemon keeps it), this promotes it, once it holds what the primary
    /// had logged while the primary is still heard from (a replica behind a
    /// live primary waits up to the claim timeout, then `TryAgain`): a new
    /// term begins here, this
    /// host's daemon ships it to the others, and the old primary, once its
    /// daemon hears of the new term, becomes a replica (a deposed primary's
    /// later writes never reach a replica).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// use ckpt::{ActiveReplicaSetError, SectionCreateError};
    /// let active = service.open("safCkpt=ar", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// let e = active.create_section(b"k", Time::END, b"v").err();
    /// assert_eq!(e, Some(SectionCreateError::NoActiveReplica));
    /// active.set_active_replica()?;
    /// active.create_section(b"k", Time::END, b"v")?;
    /// let standby = service.open("safCkpt=ar", OpenFlags::READ, None)?;
    /// assert_eq!(standby.set_active_replica(), Err(ActiveReplicaSetError::Access));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_active_replica(&self) -> Result<(), ActiveReplicaSetError> {
        if !self.writable() {
            return Err(ActiveReplicaSetError::Access);
        }
        let flags = self.attributes().flags;
        if !(flags.is_collocated() && flags.mode().is_asynchronous()) {
            return Err(ActiveReplicaSetError::NotCollocatedAsync);
        }
        let node = self.files.first().config().node_id;
        if self.seg().is_replica() {
            // Once it holds what the primary logged, if the primary is
            // still heard from (up to the claim timeout; TRY_AGAIN after).
            let wait = self.files.first().config().claim_timeout;
            self.seg()
                .promote_caught_up(node, wait)
                .map_err(|_| ActiveReplicaSetError::TryAgain)?;
        } else {
            self.seg()
                .set_active_replica(node)
                .map_err(|_| ActiveReplicaSetError::TryAgain)?;
        }
        Ok(())
    }

    /// Attributes, section count and memory used (`saCkptCheckpointStatusGet`).
    /// Expired sections are swept first.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// active.create_section(b"a", Time::END, b"12345")?;
    /// active.create_section(b"b", Time::END, b"678")?;
    /// let status = active.status()?;
    /// assert_eq!(status.sections, 2);
    /// assert_eq!(status.memory_used_bytes, 8);
    /// assert_eq!(status.attributes.sections_max, 4);
    /// // The retention duration as last set; `attributes()` keeps the creator's.
    /// active.set_retention(Time(5_000_000_000))?;
    /// assert_eq!(active.status()?.attributes.retention_ns, 5_000_000_000);
    /// assert_eq!(active.attributes().retention_ns, CreationAttributes::new(4, 16).retention_ns);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Result<CheckpointStatus, StatusError> {
        if !self.has_active_replica() {
            return Err(StatusError::NoActiveReplica);
        }
        // A sweep needs the writer claim; if another writer holds it past the
        // timeout, expired sections are still excluded below, only not freed.
        // A replica sweeps nothing (its primary's deletes come as frames):
        // it counts what a reader sees, its expired sections left out.
        let (sections, memory_used_bytes) = if self.seg().is_replica() {
            self.seg().visible_usage()
        } else {
            let _ = self.seg().sweep_expired();
            self.seg().usage()
        };
        let attributes = CreationAttributes {
            retention_ns: self.seg().retention().0,
            ..self.attributes()
        };
        Ok(CheckpointStatus {
            attributes,
            sections,
            memory_used_bytes,
        })
    }

    /// Creates a section with an explicit id (`saCkptSectionCreate`).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::SectionCreateError;
    /// let section = active.create_section(b"state", Time::END, b"v1")?;
    /// assert_eq!(section.version()?, 1);
    /// assert_eq!(active.read_section(b"state")?, b"v1");
    /// let again = active.create_section(b"state", Time::END, b"v2").err();
    /// assert_eq!(again, Some(SectionCreateError::Exist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_section(
        &self,
        id: &[u8],
        expiration: Time,
        data: &[u8],
    ) -> Result<Section<'_>, SectionCreateError> {
        self.create_checks()?;
        if self.forwarding() {
            let one = ForwardElement::new(id, 0, data);
            forward::send_one::<SectionCreateError>(self, ForwardOp::Create, expiration.0, one)?;
            return Ok(self.forwarded_section(id));
        }
        let (segment, file) = self.files.current();
        let (section, _) = segment.create_section(Some(id), expiration, data)?;
        self.replicated(SectionCreateError::Timeout)?;
        Ok(Section {
            checkpoint: self,
            file,
            section,
        })
    }

    /// The section a forwarded creation made, as this host's replica holds
    /// it (it waited for it). Created, then gone already (its expiration
    /// was past, or another node deleted it): the creation succeeded, and
    /// the handle finds no section (`NotExist`), as a local one would.
    fn forwarded_section(&self, id: &[u8]) -> Section<'_> {
        let gone = (0, SectionRef { slot: 0, gen: 0 });
        let (file, section) = self.find(id).map_or(gone, |p| (p.file, p.section));
        Section {
            checkpoint: self,
            file,
            section,
        }
    }

    /// Creates a section with a generated id (`SA_CKPT_GENERATED_SECTION_ID`):
    /// a 4-byte big-endian counter, truncated to `maxSectionIdSize`.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let (id, section) = active.create_section_generated(Time::END, b"v1")?;
    /// assert_eq!(id.as_bytes().len(), 4);
    /// assert_eq!(active.read_section(id.as_bytes())?, b"v1");
    /// section.overwrite(b"v2")?;
    /// let (other, _) = active.create_section_generated(Time::END, b"")?;
    /// assert_ne!(other, id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_section_generated(
        &self,
        expiration: Time,
        data: &[u8],
    ) -> Result<(SectionId, Section<'_>), SectionCreateError> {
        self.create_checks()?;
        if self.forwarding() {
            let one = ForwardElement::new(&[], 0, data);
            let op = ForwardOp::CreateGenerated;
            let reply = forward::send_one::<SectionCreateError>(self, op, expiration.0, one)?;
            let id = SectionId(reply.id);
            let section = self.forwarded_section(id.as_bytes());
            return Ok((id, section));
        }
        let (segment, file) = self.files.current();
        let (section, id) = segment.create_section(None, expiration, data)?;
        self.replicated(SectionCreateError::Timeout)?;
        Ok((
            id,
            Section {
                checkpoint: self,
                file,
                section,
            },
        ))
    }

    fn create_checks(&self) -> Result<(), SectionCreateError> {
        if !self.writable() {
            return Err(SectionCreateError::Access);
        }
        if !self.has_active_replica() {
            return Err(SectionCreateError::NoActiveReplica);
        }
        Ok(())
    }

    /// Room for a section id of this checkpoint.
    fn id_buffer(&self) -> Vec<u8> {
        vec![0; self.attributes().section_id_bytes_max as usize]
    }

    /// The file the handle is on now (see `follow.rs`).
    #[inline]
    fn seg(&self) -> &Segment {
        self.files.current().0
    }

    /// Section `id` in the file the handle is on now, and that file's
    /// number.
    fn find(&self, id: &[u8]) -> Result<Place<'_>, LookupError> {
        let (segment, file) = self.files.current();
        let section = self.find_in(segment, id)?;
        Ok(Place {
            segment,
            file,
            section,
        })
    }

    /// Section `id` in `segment` (one of the handle's files: a caller that
    /// finds and then uses a section finds it in the file it uses).
    fn find_in(&self, segment: &Segment, id: &[u8]) -> Result<SectionRef, LookupError> {
        if id.len() as u64 > self.attributes().section_id_bytes_max {
            return Err(LookupError::IdTooLong);
        }
        match segment.lookup_hinted(id, &self.last_found, false) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(LookupError::NotExist),
            Err(_) => Err(LookupError::TryAgain),
        }
    }

    /// Where section handle `section`, made in file `file`, is in the file
    /// the handle is on now: itself, or, if the handle moved to a newer
    /// file since, the same section there (`None`: gone).
    #[inline]
    fn place(&self, file: u32, section: SectionRef) -> Option<(&Segment, SectionRef)> {
        let (segment, now) = self.files.current();
        if now == file {
            return Some((segment, section));
        }
        self.relocate(file, section)
    }

    /// [`Checkpoint::place`] of a section handle made in an older file: the
    /// section of the same id in the file the handle is on now, if it is the
    /// same section, not a namesake created after a delete. Both files hold
    /// the same origin number for the same section
    /// ([`Segment::section_origin`]: its creation, or its last expiration
    /// change); a differing one is a namesake, or an expiration change made
    /// while this host's replica was behind, which this cannot tell apart:
    /// either way `None` (`NotExist`: look the section up again).
    #[cold]
    fn relocate(&self, file: u32, section: SectionRef) -> Option<(&Segment, SectionRef)> {
        let old = self.files.get(file)?;
        let origin = old.section_origin(section)?;
        let mut buf = self.id_buffer();
        let id = section_id(old, section, &mut buf)?;
        let (segment, _) = self.files.current();
        let found = segment.lookup(id).ok()??;
        (segment.section_origin(found) == Some(origin)).then_some((segment, found))
    }

    /// A handle on section `id` for repeated zero-lookup reads and writes.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::LookupError;
    /// active.create_section(b"state", Time::END, b"v1")?;
    /// let state = active.section(b"state")?; // one lookup
    /// for v in [b"v2", b"v3"] {
    ///     state.overwrite(v)?; // none here
    /// }
    /// assert_eq!(active.read_section(b"state")?, b"v3");
    /// assert_eq!(active.section(b"nope").err(), Some(LookupError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn section(&self, id: &[u8]) -> Result<Section<'_>, LookupError> {
        if !self.has_active_replica() {
            return Err(LookupError::NoActiveReplica);
        }
        let found = self.find(id)?;
        Ok(Section {
            checkpoint: self,
            file: found.file,
            section: found.section,
        })
    }

    /// Deletes a section (`saCkptSectionDelete`); the default section cannot be.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::{ReadError, SectionDeleteError};
    /// active.create_section(b"k", Time::END, b"v")?;
    /// active.delete_section(b"k")?;
    /// assert_eq!(active.read_section(b"k"), Err(ReadError::NotExist));
    /// assert_eq!(active.delete_section(b"k"), Err(SectionDeleteError::NotExist));
    /// assert_eq!(active.delete_section(b""), Err(SectionDeleteError::DefaultSection));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_section(&self, id: &[u8]) -> Result<(), SectionDeleteError> {
        if self.forwards(id)? {
            let one = ForwardElement::new(id, 0, &[]);
            return forward::send_one(self, ForwardOp::Delete, 0, one).map(drop);
        }
        let found = self.section_to_change(id)?;
        found.segment.delete_section(found.section)?;
        self.replicated(SectionDeleteError::Timeout)
    }

    /// Sets a section's absolute expiration (`saCkptSectionExpirationTimeSet`);
    /// [`Time::END`] for never. Not allowed on the default section.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::ReadError;
    /// active.create_section(b"lease", Time::END, b"v")?;
    /// active.set_expiration(b"lease", Time(1))?; // long past: expired at once
    /// assert_eq!(active.read_section(b"lease"), Err(ReadError::NotExist));
    /// assert_eq!(active.status()?.sections, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_expiration(&self, id: &[u8], expiration: Time) -> Result<(), ExpirationSetError> {
        if self.forwards(id)? {
            let one = ForwardElement::new(id, 0, &[]);
            let op = ForwardOp::SetExpiration;
            return forward::send_one(self, op, expiration.0, one).map(drop);
        }
        let found = self.section_to_change(id)?;
        found.segment.set_expiration(found.section, expiration)?;
        self.replicated(ExpirationSetError::Timeout)
    }

    /// True if this handle's changes go to the primary: it was opened on a
    /// replica, or on a primary that yielded to another incarnation of the
    /// name created elsewhere at the same time (it opened the checkpoint
    /// that is that one now), and this copy is a replica (promoted here, it
    /// writes here).
    fn forwarding(&self) -> bool {
        self.forwarding_in(self.seg())
    }

    /// [`Checkpoint::forwarding`], for the file the handle is on.
    #[inline]
    fn forwarding_in(&self, segment: &Segment) -> bool {
        segment.is_replica() && (self.forwards || self.files.first().is_yielded())
    }

    /// The checks of delete and expiration change, in the spec's order.
    fn section_to_change(&self, id: &[u8]) -> Result<Place<'_>, Refusal> {
        self.change_checks(id)?;
        self.find(id).map_err(Refusal::Lookup)
    }

    /// The checks of delete and expiration change before the section is
    /// looked up, in the spec's order.
    fn change_checks(&self, id: &[u8]) -> Result<(), Refusal> {
        if id.is_empty() {
            return Err(Refusal::DefaultSection);
        }
        if !self.writable() {
            return Err(Refusal::Access);
        }
        if !self.has_active_replica() {
            return Err(Refusal::NoActiveReplica);
        }
        Ok(())
    }

    /// True if a delete or an expiration change of section `id` goes to
    /// the primary (this copy is a replica), once the checks made here
    /// pass.
    fn forwards(&self, id: &[u8]) -> Result<bool, Refusal> {
        if !self.forwarding() {
            return Ok(false);
        }
        self.change_checks(id)?;
        Ok(true)
    }

    /// Writes the elements in order (`saCkptCheckpointWrite`): all or nothing
    /// on error, with the index of the first failing element.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::{WriteError, WriteVec};
    /// active.create_section(b"a", Time::END, b"old")?;
    /// active.create_section(b"b", Time::END, b"old")?;
    /// let ok = WriteVec { id: b"a", offset: 0, data: b"new" };
    /// active.write(&[ok, WriteVec { id: b"b", offset: 3, data: b"er" }]).map_err(|(_, e)| e)?;
    /// assert_eq!(active.read_section(b"b")?, b"older");
    /// // All or nothing: element 1 fails, so element 0 is not applied either.
    /// let bad = WriteVec { id: b"nope", offset: 0, data: b"x" };
    /// let e = active.write(&[WriteVec { data: b"NEW", ..ok }, bad]);
    /// assert_eq!(e, Err((1, WriteError::NotExist)));
    /// assert_eq!(active.read_section(b"a")?, b"new");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write<'a>(&self, elements: &[WriteVec<'a>]) -> Result<(), (usize, WriteError)> {
        if !self.writable() {
            return Err((0, WriteError::Access));
        }
        if !self.has_active_replica() {
            return Err((0, WriteError::NoActiveReplica));
        }
        if self.forwarding() {
            if elements.is_empty() {
                return Ok(());
            }
            let elements = elements
                .iter()
                .map(|e| ForwardElement::new(e.id, e.offset, e.data))
                .collect();
            return forward::send(self, ForwardOp::Write, 0, elements).map(drop);
        }
        let segment = self.seg();
        let resolve =
            |i: usize, e: &WriteVec<'a>| -> Result<WriteElement<'a>, (usize, WriteError)> {
                let section = self
                    .find_in(segment, e.id)
                    .map_err(|err| (i, lookup_to_write(err)))?;
                Ok(WriteElement {
                    section,
                    offset: Some(e.offset),
                    data: e.data,
                })
            };
        // Short vectors (the common case) resolve on the stack: no allocation.
        const INLINE: usize = 8;
        if elements.len() <= INLINE {
            let unused = WriteElement {
                section: SectionRef { slot: 0, gen: 0 },
                offset: None,
                data: &[],
            };
            let mut resolved = [unused; INLINE];
            for (i, (slot, e)) in resolved.iter_mut().zip(elements).enumerate() {
                *slot = resolve(i, e)?;
            }
            segment.write_many(&resolved[..elements.len()])?;
        } else {
            let resolved = elements
                .iter()
                .enumerate()
                .map(|(i, e)| resolve(i, e))
                .collect::<Result<Vec<_>, _>>()?;
            segment.write_many(&resolved)?;
        }
        self.replicated(WriteError::Timeout).map_err(|e| (0, e))
    }

    /// For a synchronous checkpoint (`WR_ALL_REPLICAS`), waits until every
    /// replica holds the changes made so far; `Err(timeout)` if they do not
    /// within `Config::ack_timeout`, or if this copy was demoted meanwhile (a
    /// primary of a newer term elsewhere deposed it: what it committed here
    /// is not the checkpoint's). Asynchronous checkpoints never wait.
    #[inline]
    fn replicated<E>(&self, timeout: E) -> Result<(), E> {
        if self.attributes().flags.mode() != UpdateMode::AllReplicas {
            return Ok(());
        }
        let segment = self.seg();
        let deadline = segment.config().ack_timeout;
        if segment.wait_acknowledged(Need::All, segment.last_seq(), deadline)
            && !segment.is_replica()
        {
            Ok(())
        } else {
            Err(timeout)
        }
    }

    /// Replaces a section's data and size (`saCkptSectionOverwrite`).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::WriteError;
    /// active.create_section(b"k", Time::END, b"a longer value")?;
    /// active.overwrite(b"k", b"short")?;
    /// assert_eq!(active.read_section(b"k")?, b"short");
    /// assert_eq!(active.overwrite(b"nope", b"x"), Err(WriteError::NotExist));
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// assert_eq!(standby.overwrite(b"k", b"x"), Err(WriteError::Access));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overwrite(&self, id: &[u8], data: &[u8]) -> Result<(), WriteError> {
        if !self.writable() {
            return Err(WriteError::Access);
        }
        // One look at which file the handle is on (the C overwrite's path).
        let segment = self.seg();
        if !self.has_active_replica_in(segment) {
            return Err(WriteError::NoActiveReplica);
        }
        if self.forwarding_in(segment) {
            let one = ForwardElement::new(id, 0, data);
            return forward::send_one(self, ForwardOp::Overwrite, 0, one).map(drop);
        }
        let section = self.find_in(segment, id).map_err(lookup_to_write)?;
        segment.write(section, None, data)?;
        self.replicated(WriteError::Timeout)
    }

    /// Reads the elements (`saCkptCheckpointRead`), filling each `read_bytes`.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::{ReadError, ReadVec};
    /// active.create_section(b"k", Time::END, b"hello world")?;
    /// let mut buf = [0u8; 5];
    /// let mut elements = [ReadVec { id: b"k", offset: 6, buf: &mut buf, read_bytes: 0 }];
    /// active.read(&mut elements).map_err(|(i, e)| format!("element {i}: {e}"))?;
    /// assert_eq!(elements[0].read_bytes, 5);
    /// assert_eq!(&buf, b"world");
    /// let mut missing = [ReadVec { id: b"nope", offset: 0, buf: &mut [0; 1], read_bytes: 0 }];
    /// assert_eq!(active.read(&mut missing), Err((0, ReadError::NotExist)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(&self, elements: &mut [ReadVec<'_>]) -> Result<(), (usize, ReadError)> {
        if !self.readable() {
            return Err((0, ReadError::Access));
        }
        // One look at which file the handle is on: every element is read
        // from it (the C read's path).
        let segment = self.seg();
        if !self.has_active_replica_in(segment) {
            return Err((0, ReadError::NoActiveReplica));
        }
        let max = self.attributes().section_bytes_max;
        let several = elements.len() > 1;
        let mut read_all = || {
            for (i, e) in elements.iter_mut().enumerate() {
                // The spec bounds the buffer by maxSectionSize; an offset near
                // the end only reads less, one past it is refused (OpenSAF
                // also refuses offset + length past maxSectionSize:
                // libSaCkpt's opensaf profile does).
                if e.buf.len() as u64 > max {
                    return Err((i, ReadError::TooLarge));
                }
                let section = self
                    .find_in(segment, e.id)
                    .map_err(|err| (i, lookup_to_read(err)))?;
                e.read_bytes =
                    read_from(segment, section, e.offset, e.buf).map_err(|err| (i, err))?;
            }
            Ok(())
        };
        if several {
            segment.read_isolated(read_all)
        } else {
            read_all()
        }
    }

    /// Runs `read`, a read of several sections made of several calls (the C
    /// library's element by element), so that it sees every vector write
    /// whole: again if a vector write's sections flipped meanwhile, and
    /// finally under the checkpoint's claim (`Segment::read_isolated`); and
    /// again if the handle moved to another file meanwhile (a replica
    /// rebuilt from a snapshot: its elements would come from two files), at
    /// most 4 times. [`Checkpoint::read`] of several
    /// elements reads one file, and sees vector writes whole itself.
    pub fn read_isolated<T>(&self, mut read: impl FnMut() -> T) -> T {
        for _ in 0..ISOLATED_FILE_TRIES {
            let (segment, file) = self.files.current();
            let out = segment.read_isolated(&mut read);
            if self.files.current().1 == file {
                return out;
            }
        }
        read()
    }

    /// Reads a whole section into a vector.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::ReadError;
    /// active.create_section(b"k", Time::END, &7u64.to_be_bytes())?;
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// let bytes = standby.read_section(b"k")?;
    /// assert_eq!(u64::from_be_bytes(bytes.try_into().unwrap()), 7);
    /// assert_eq!(standby.read_section(b"nope"), Err(ReadError::NotExist));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_section(&self, id: &[u8]) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        self.read_section_into(id, &mut out)?;
        Ok(out)
    }

    /// Reads a whole section into `out`, which is resized to it (its
    /// allocation is reused: repeated reads allocate only to grow).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// active.create_section(b"k", Time::END, b"long value")?;
    /// let mut out = Vec::new();
    /// active.read_section_into(b"k", &mut out)?;
    /// active.overwrite(b"k", b"short")?;
    /// active.read_section_into(b"k", &mut out)?;
    /// assert_eq!(out, b"short");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_section_into(&self, id: &[u8], out: &mut Vec<u8>) -> Result<(), ReadError> {
        if !self.readable() {
            return Err(ReadError::Access);
        }
        if !self.has_active_replica() {
            return Err(ReadError::NoActiveReplica);
        }
        let found = self.find(id).map_err(lookup_to_read)?;
        found
            .segment
            .read_whole(found.section, out)
            .map(|_| ())
            .map_err(read_fail)
    }

    /// The sections `chosen` selects (`saCkptSectionIteration*`): each section
    /// that exists throughout the iteration is returned exactly once; expired
    /// sections never are.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::SectionsChosen;
    /// active.create_section(b"a", Time::END, b"123")?;
    /// active.create_section(b"gone", Time(1), b"x")?; // already expired
    /// let found: Vec<_> = active.sections(SectionsChosen::Any)?.collect();
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].id.as_bytes(), b"a");
    /// assert_eq!((found[0].size_bytes, found[0].expiration), (3, Time::END));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sections(&self, chosen: SectionsChosen) -> Result<Sections<'_>, IterationError> {
        Ok(Sections {
            checkpoint: self,
            cursor: self.section_cursor(chosen)?,
        })
    }

    /// An iteration over the chosen sections that does not borrow the
    /// checkpoint: [`Checkpoint::next_section`] advances it, and each section
    /// is described as it is at that call. A section that exists when the
    /// cursor is made and is not deleted is returned exactly once; one created
    /// meanwhile may or may not be.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::SectionsChosen;
    /// active.create_section(b"a", Time::END, b"1")?;
    /// let mut cursor = active.section_cursor(SectionsChosen::Any)?;
    /// active.section(b"a")?.overwrite(b"longer")?;
    /// let a = active.next_section(&mut cursor).expect("section a");
    /// assert_eq!(a.size_bytes, 6); // as it is now, not when the cursor was made
    /// assert!(active.next_section(&mut cursor).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn section_cursor(&self, chosen: SectionsChosen) -> Result<SectionCursor, IterationError> {
        if !self.has_active_replica() {
            return Err(IterationError::NoActiveReplica);
        }
        Ok(SectionCursor {
            chosen,
            file: self.files.current().1,
            slot: 0,
            now: ckpt_shm::segment::now(),
            id: self.id_buffer(),
        })
    }

    /// The next section of `cursor`'s iteration, described as it is now.
    pub fn next_section(&self, cursor: &mut SectionCursor) -> Option<SectionDescriptor> {
        // The file it began in, even if the handle moved on since: each
        // section once, as it was then.
        let segment = self.files.get(cursor.file)?;
        while cursor.slot < segment.geometry().sections_max {
            let slot = cursor.slot;
            cursor.slot += 1;
            if let Some(v) = segment.section_view(slot, cursor.chosen, cursor.now, &mut cursor.id) {
                return Some(SectionDescriptor {
                    id: SectionId(v.id.to_vec()),
                    expiration: v.expiration,
                    size_bytes: v.size_bytes,
                    state: SectionState::Valid,
                    last_update: v.last_update,
                });
            }
        }
        None
    }

    /// Calls `f` for each chosen section without allocating (the id is borrowed).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::SectionsChosen;
    /// active.create_section(b"a", Time::END, b"123")?;
    /// active.create_section(b"b", Time::END, b"45")?;
    /// let mut total = 0;
    /// active.for_each_section(SectionsChosen::Forever, |_id, size, _expiration| total += size)?;
    /// assert_eq!(total, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_each_section(
        &self,
        chosen: SectionsChosen,
        mut f: impl FnMut(&[u8], u64, Time),
    ) -> Result<(), IterationError> {
        if !self.has_active_replica() {
            return Err(IterationError::NoActiveReplica);
        }
        self.seg()
            .for_each_section(chosen, |v| f(v.id, v.size_bytes, v.expiration));
        Ok(())
    }

    /// Propagates earlier writes to the other replicas
    /// (`saCkptCheckpointSynchronize`): waits, at most `timeout`, until every
    /// replica registered with the checkpoint has acknowledged every change
    /// made so far. With no replica registered (one host), it returns as soon
    /// as the checks pass.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::SynchronizeError;
    /// active.create_section(b"k", Time::END, b"v")?;
    /// active.synchronize(Time::SECOND)?; // one host: no replica to wait for
    /// assert_eq!(active.synchronize(Time(-1)), Err(SynchronizeError::InvalidTimeout));
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// assert_eq!(standby.synchronize(Time::SECOND), Err(SynchronizeError::Access));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn synchronize(&self, timeout: Time) -> Result<(), SynchronizeError> {
        if !self.writable() {
            return Err(SynchronizeError::Access);
        }
        if !self.attributes().flags.mode().is_asynchronous() {
            return Err(SynchronizeError::Synchronous);
        }
        if timeout.0 < 0 {
            return Err(SynchronizeError::InvalidTimeout);
        }
        if !self.has_active_replica() {
            return Err(SynchronizeError::NoActiveReplica);
        }
        let wait = Duration::from_nanos(timeout.0 as u64);
        if self.forwarding() {
            // The primary waits for its replicas, within the timeout (and a
            // moment for the answer to come back).
            let none = ForwardElement::new(&[], 0, &[]);
            let within = wait
                .saturating_add(SYNCHRONIZE_SLACK)
                .min(control::WANT_WAIT_MAX);
            return forward::send_within(
                self,
                ForwardOp::Synchronize,
                timeout.0,
                vec![none],
                within,
            )
            .map(drop)
            .map_err(|(_, e)| e);
        }
        // Every replica registered with this checkpoint must hold every
        // change made so far (none registered: this host's copy is all).
        let segment = self.seg();
        if segment.wait_acknowledged(Need::All, segment.last_seq(), wait) {
            Ok(())
        } else {
            Err(SynchronizeError::Timeout)
        }
    }

    /// Follows every change from now on (hot standby): which sections changed,
    /// in commit order, with the data.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::Mutation;
    /// let state = active.create_section(b"state", Time::END, b"v1")?;
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// let mut changes = standby.watch(); // from now on: the create is not reported
    /// state.overwrite(b"v2")?;
    /// let change = changes.next_change()?.expect("one change");
    /// assert_eq!(change.mutation, Mutation::Overwrite { id: b"state", data: b"v2" });
    /// assert_eq!(change.version, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self) -> Watcher<'_> {
        self.watcher(None)
    }

    /// A watcher of the changes from log position `position` on: one an
    /// earlier [`Watcher::position`] gave, so that a watcher made later (in
    /// another thread, say) misses nothing made since.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, Mutation, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// let from = standby.watch().position();
    /// active.create_section(b"k", Time::END, b"v1")?;
    /// let mut changes = standby.watch_from(from);
    /// let change = changes.next_change()?.expect("the create");
    /// assert!(matches!(change.mutation, Mutation::Create { id: b"k", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A position of a file this handle has since moved from (a snapshot
    /// rebuilt its replica: `follow.rs`) is followed there: the watcher
    /// reports what that file still holds, then `Lagged`.
    pub fn watch_from(&self, position: WatchPosition) -> Watcher<'_> {
        match self.files.get(position.file) {
            Some(segment) => Watcher {
                checkpoint: self,
                file: position.file,
                consumer: segment.consumer(Some(position.at)),
            },
            // Not one of this handle's positions: from now on.
            None => self.watcher(None),
        }
    }

    fn watcher(&self, position: Option<u64>) -> Watcher<'_> {
        let (segment, file) = self.files.current();
        Watcher {
            checkpoint: self,
            file,
            consumer: segment.consumer(position),
        }
    }

    /// Closes the checkpoint (`saCkptCheckpointClose`); the same as dropping it.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// active.create_section(b"k", Time::END, b"kept")?;
    /// active.close();
    /// // Within the retention duration (60 s here) the checkpoint and its data remain.
    /// let again = service.open("safCkpt=doc", OpenFlags::READ, None)?;
    /// assert_eq!(again.read_section(b"k")?, b"kept");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) {}

    /// The underlying segment, for tools and benchmarks: the file the
    /// handle is on now (a replica rebuilt from a snapshot is a new file;
    /// the handle moves to it when it next looks).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let segment = active.segment();
    /// assert!(segment.path().starts_with(dir.path()));
    /// assert_eq!(segment.attributes().sections_max, 4);
    /// assert!(!segment.is_unlinked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.seg()
    }
}

/// The id of `section` in `segment`, copied into `buf` (one of
/// [`Checkpoint::id_buffer`]); `None` if it is deleted or expired there.
fn section_id<'b>(segment: &Segment, section: SectionRef, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let now = ckpt_shm::segment::now();
    let view = segment.section_view(section.slot, SectionsChosen::Any, now, buf)?;
    (view.section == section).then_some(view.id)
}

/// A section found in one of a handle's files.
#[derive(Clone, Copy)]
struct Place<'a> {
    /// The file.
    segment: &'a Segment,
    /// Its number (`follow.rs`).
    file: u32,
    section: SectionRef,
}

/// Why a delete or expiration change was refused before reaching the segment.
enum Refusal {
    DefaultSection,
    Access,
    NoActiveReplica,
    Lookup(LookupError),
}

impl From<Refusal> for SectionDeleteError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::DefaultSection => SectionDeleteError::DefaultSection,
            Refusal::Access => SectionDeleteError::Access,
            Refusal::NoActiveReplica => SectionDeleteError::NoActiveReplica,
            Refusal::Lookup(LookupError::IdTooLong) => SectionDeleteError::IdTooLong,
            Refusal::Lookup(LookupError::TryAgain) => SectionDeleteError::TryAgain,
            Refusal::Lookup(LookupError::NotExist | LookupError::NoActiveReplica) => {
                SectionDeleteError::NotExist
            }
        }
    }
}

impl From<Refusal> for ExpirationSetError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::DefaultSection => ExpirationSetError::DefaultSection,
            Refusal::Access => ExpirationSetError::Access,
            Refusal::NoActiveReplica => ExpirationSetError::NoActiveReplica,
            Refusal::Lookup(LookupError::IdTooLong) => ExpirationSetError::IdTooLong,
            Refusal::Lookup(LookupError::TryAgain) => ExpirationSetError::TryAgain,
            Refusal::Lookup(LookupError::NotExist | LookupError::NoActiveReplica) => {
                ExpirationSetError::NotExist
            }
        }
    }
}

fn lookup_to_write(e: LookupError) -> WriteError {
    match e {
        LookupError::IdTooLong => WriteError::IdTooLong,
        LookupError::NotExist => WriteError::NotExist,
        LookupError::NoActiveReplica => WriteError::NoActiveReplica,
        LookupError::TryAgain => WriteError::TryAgain,
    }
}

fn lookup_to_read(e: LookupError) -> ReadError {
    match e {
        LookupError::IdTooLong => ReadError::IdTooLong,
        LookupError::NotExist => ReadError::NotExist,
        LookupError::NoActiveReplica => ReadError::NoActiveReplica,
        LookupError::TryAgain => ReadError::TryAgain,
    }
}

/// How many times [`Checkpoint::read_isolated`] runs a read that a move of
/// the handle to another file interrupted (moves come one per snapshot).
const ISOLATED_FILE_TRIES: u32 = 4;

/// Reads `section` from byte `offset` into `buf`: the bytes read (fewer
/// than `buf` holds near the end, 0 at it), or `OffsetPastEnd` past it.
#[inline]
fn read_from(
    segment: &Segment,
    section: SectionRef,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, ReadError> {
    let (n, meta) = segment.read(section, offset, buf).map_err(read_fail)?;
    if offset > meta.size {
        return Err(ReadError::OffsetPastEnd);
    }
    Ok(n)
}

fn read_fail(f: ReadFail) -> ReadError {
    match f {
        ReadFail::Gone => ReadError::NotExist,
        ReadFail::Busy => ReadError::TryAgain,
        ReadFail::Corrupt => ReadError::Corrupt,
    }
}

/// A handle on one section: reads and writes without a lookup.
///
/// It stays valid until the section is deleted (then operations return
/// `NOT_EXIST`, even if a new section reuses the slot).
///
/// ```
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
/// # active.set_active_replica()?;
/// use ckpt::WriteError;
/// let state = active.create_section(b"state", Time::END, b"v1")?;
/// state.overwrite(b"v2")?;
/// active.delete_section(b"state")?;
/// active.create_section(b"state", Time::END, b"new")?; // may reuse the slot
/// assert_eq!(state.overwrite(b"v3"), Err(WriteError::NotExist));
/// assert_eq!(active.read_section(b"state")?, b"new");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Section<'a> {
    checkpoint: &'a Checkpoint,
    /// The handle's file `section` is in (`follow.rs`).
    file: u32,
    section: SectionRef,
}

impl Section<'_> {
    /// The section in the file its checkpoint handle is on now (`None`:
    /// gone).
    #[inline]
    fn place(&self) -> Option<(&Segment, SectionRef)> {
        self.checkpoint.place(self.file, self.section)
    }

    fn write_checks(&self) -> Result<(), WriteError> {
        if !self.checkpoint.writable() {
            return Err(WriteError::Access);
        }
        if !self.checkpoint.has_active_replica() {
            return Err(WriteError::NoActiveReplica);
        }
        Ok(())
    }

    /// Replaces the section's data and size. The hot path: one claim CAS, two
    /// copies (section buffer, log frame), one commit store; no syscall.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let state = active.create_section(b"state", Time::END, b"a longer value")?;
    /// state.overwrite(b"v2")?;
    /// assert_eq!(active.read_section(b"state")?, b"v2"); // data and size replaced
    /// assert_eq!(state.version()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn overwrite(&self, data: &[u8]) -> Result<(), WriteError> {
        self.write_checks()?;
        if self.checkpoint.forwarding() {
            return self.forward(ForwardOp::Overwrite, 0, data);
        }
        let (segment, section) = self.place().ok_or(WriteError::NotExist)?;
        segment.write(section, None, data)?;
        self.checkpoint.replicated(WriteError::Timeout)
    }

    /// Where the checkpoint's handle forwards its changes (it was opened on
    /// a replica): the change, by this section's id, to the primary.
    #[cold]
    fn forward(&self, op: ForwardOp, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let c = self.checkpoint;
        let mut buf = c.id_buffer();
        // Deleted or expired here (as the primary's frames said): gone.
        let id = self
            .place()
            .and_then(|(segment, section)| section_id(segment, section, &mut buf))
            .ok_or(WriteError::NotExist)?;
        let one = ForwardElement::new(id, offset, data);
        forward::send_one(c, op, 0, one).map(drop)
    }

    /// Writes `data` at `offset`; the section grows to hold it (over zero
    /// bytes from its end, if `offset` is past it), up to `maxSectionSize`.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::WriteError;
    /// let greeting = active.create_section(b"greeting", Time::END, b"hello")?;
    /// greeting.write_at(5, b" world")?;
    /// assert_eq!(active.read_section(b"greeting")?, b"hello world");
    /// greeting.write_at(0, b"J")?;
    /// assert_eq!(active.read_section(b"greeting")?, b"Jello world");
    /// greeting.write_at(12, b"!")?; // past the end: over a zero byte
    /// assert_eq!(active.read_section(b"greeting")?, b"Jello world\0!");
    /// assert_eq!(greeting.write_at(16, b"!"), Err(WriteError::TooLarge));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        self.write_checks()?;
        if self.checkpoint.forwarding() {
            return self.forward(ForwardOp::Write, offset, data);
        }
        let (segment, section) = self.place().ok_or(WriteError::NotExist)?;
        segment.write(section, Some(offset), data)?;
        self.checkpoint.replicated(WriteError::Timeout)
    }

    /// Replaces the section with `len` bytes that `fill` writes directly into
    /// the shared segment (zero-copy). `fill` gets the section's spare buffer
    /// as a [`SpareBuffer`] (`copy_from_slice`, `write_at`, `set`, `fill`,
    /// `read_at`: atomic accesses, since readers of an older version may still
    /// be copying it). It holds an older version: write every byte you care
    /// about. If `fill` panics, the section keeps its old version.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let counter = active.create_section(b"counter", Time::END, &0u64.to_be_bytes())?;
    /// counter.overwrite_with(8, |buf| buf.copy_from_slice(&42u64.to_be_bytes()))?;
    /// assert_eq!(active.read_section(b"counter")?, 42u64.to_be_bytes());
    /// assert_eq!(counter.version()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overwrite_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut SpareBuffer<'_>),
    ) -> Result<(), WriteError> {
        self.write_checks()?;
        if self.checkpoint.forwarding() {
            // The spare buffer is the replica's, which only its primary's
            // frames write: the bytes are filled in here and sent.
            if len as u64 > self.checkpoint.attributes().section_bytes_max {
                return Err(WriteError::TooLarge);
            }
            let mut data = vec![0u8; len];
            let mut buf = SpareBuffer::private(&mut data);
            fill(&mut buf);
            return self.forward(ForwardOp::Overwrite, 0, &data);
        }
        let (segment, section) = self.place().ok_or(WriteError::NotExist)?;
        segment.overwrite_with(section, len, fill)?;
        self.checkpoint.replicated(WriteError::Timeout)
    }

    /// Copies from `offset` into `buf`; returns the bytes read.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let section = active.create_section(b"k", Time::END, b"hello world")?;
    /// let mut buf = [0u8; 16];
    /// let n = section.read(6, &mut buf)?;
    /// assert_eq!(&buf[..n], b"world");
    /// assert_eq!(section.read(11, &mut buf)?, 0); // at the end: nothing left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, ReadError> {
        let (segment, section) = self.read_checks()?;
        read_from(segment, section, offset, buf)
    }

    /// The committed version (1 at creation, +1 per write).
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let section = active.create_section(b"k", Time::END, b"v1")?;
    /// assert_eq!(section.version()?, 1);
    /// section.overwrite(b"v2")?;
    /// section.write_at(2, b"!")?;
    /// assert_eq!(section.version()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn version(&self) -> Result<u64, ReadError> {
        let (segment, section) = self.read_checks()?;
        segment
            .read(section, 0, &mut [])
            .map(|(_, meta)| meta.version)
            .map_err(read_fail)
    }

    /// What every read through the handle checks first: opened for reading,
    /// an active replica, the section not expired; where it is. (Unlike an ioVector
    /// element of [`Checkpoint::read`], a handle's buffer is a capacity, not
    /// a size asked for: it may pass `maxSectionSize`.)
    fn read_checks(&self) -> Result<(&Segment, SectionRef), ReadError> {
        if !self.checkpoint.readable() {
            return Err(ReadError::Access);
        }
        if !self.checkpoint.has_active_replica() {
            return Err(ReadError::NoActiveReplica);
        }
        match self.place() {
            Some((segment, section)) if !segment.is_expired(section) => Ok((segment, section)),
            _ => Err(ReadError::NotExist),
        }
    }
}

/// Iterator over chosen sections (see [`Checkpoint::sections`]).
///
/// ```
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
/// # active.set_active_replica()?;
/// use ckpt::{SectionState, SectionsChosen};
/// active.create_section(b"a", Time::END, b"1")?;
/// active.create_section(b"b", Time::END, b"22")?;
/// let mut ids = Vec::new();
/// for descriptor in active.sections(SectionsChosen::Forever)? {
///     assert_eq!(descriptor.state, SectionState::Valid);
///     ids.push(descriptor.id.0);
/// }
/// ids.sort();
/// assert_eq!(ids, [b"a".to_vec(), b"b".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sections<'a> {
    checkpoint: &'a Checkpoint,
    cursor: SectionCursor,
}

impl Iterator for Sections<'_> {
    type Item = SectionDescriptor;

    fn next(&mut self) -> Option<SectionDescriptor> {
        self.checkpoint.next_section(&mut self.cursor)
    }
}

/// Where an iteration over sections stands, without borrowing the
/// checkpoint (see [`Checkpoint::section_cursor`]).
#[derive(Debug, Clone)]
pub struct SectionCursor {
    chosen: SectionsChosen,
    /// The handle's file it iterates (`follow.rs`).
    file: u32,
    /// The next slot to look at.
    slot: u32,
    /// Expired sections (by this time) are not returned.
    now: Time,
    /// Where each section's id is copied.
    id: Vec<u8>,
}

/// One change a [`Watcher`] reports.
///
/// ```
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
/// # active.set_active_replica()?;
/// use ckpt::{Mutation, WriteVec};
/// active.create_section(b"a", Time::END, b"")?;
/// active.create_section(b"b", Time::END, b"")?;
/// let mut changes = active.watch();
/// let a = WriteVec { id: b"a", offset: 0, data: b"1" };
/// active.write(&[a, WriteVec { id: b"b", ..a }]).map_err(|(_, e)| e)?;
/// let first = changes.next_change()?.expect("first element");
/// assert!(first.more); // more of the same call follows
/// let first_seq = first.seq;
/// let second = changes.next_change()?.expect("second element");
/// assert_eq!((second.seq, second.more), (first_seq + 1, false));
/// assert_eq!(second.mutation, Mutation::Write { id: b"b", offset: 0, data: b"1" });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    /// The change's sequence number (checkpoint-wide, +1 per frame).
    pub seq: u64,
    /// The active replica's term when it was made.
    pub term: u32,
    /// The section's version after it (0 for checkpoint-wide changes).
    pub version: u64,
    /// The writer's clock.
    pub time: Time,
    /// What changed, with the data.
    pub mutation: Mutation<'a>,
    /// True if the data was too large for one frame: `mutation` carries only
    /// its last piece; read the section itself.
    pub staged: bool,
    /// True if more changes of the same call follow (a vector write).
    pub more: bool,
}

/// Follows a checkpoint's changes (hot standby). See [`Checkpoint::watch`].
///
/// ```
/// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
/// # let dir = tempfile::tempdir()?;
/// # let service = Service::with_config(Config::with_dir(dir.path()));
/// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
/// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
/// # active.set_active_replica()?;
/// use ckpt::Mutation;
/// # use std::time::Duration;
/// let standby = service.open("safCkpt=doc", OpenFlags::READ, None)?;
/// let mut changes = standby.watch();
/// active.create_section(b"state", Time::END, b"v1")?;
/// let mut created = Vec::new();
/// while changes.wait(Duration::from_millis(100), Duration::ZERO) {
///     let Some(change) = changes.next_change()? else { break };
///     if let Mutation::Create { id, .. } = change.mutation {
///         created.push(id.to_vec());
///     }
/// }
/// assert_eq!(created, [b"state".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Watcher<'a> {
    checkpoint: &'a Checkpoint,
    /// The handle's file `consumer` follows (`follow.rs`).
    file: u32,
    consumer: ckpt_shm::Consumer<'a>,
}

impl Watcher<'_> {
    /// The next change, or `None` if there is none yet. The pieces of a
    /// large change (`Stage` frames) are not reported; its own change is.
    ///
    /// `Err(WatchError::Lagged)` means the watcher fell more than the log ring
    /// behind: call [`Watcher::resync`] and go on.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use ckpt::Mutation;
    /// let mut changes = active.watch();
    /// assert!(changes.next_change()?.is_none()); // nothing yet
    /// active.create_section(b"k", Time::END, b"v")?;
    /// let change = changes.next_change()?.expect("the create");
    /// let expected = Mutation::Create { id: b"k", expiration: Time::END, data: b"v" };
    /// assert_eq!(change.mutation, expected);
    /// assert!(changes.next_change()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_change(&mut self) -> Result<Option<Change<'_>>, WatchError> {
        loop {
            let Some(header) = self.consumer.advance()? else {
                if self.moved() {
                    // Its file was superseded by a snapshot rebuild: what
                    // came since is in the newer file, which a resync reads.
                    let oldest = self.consumer.position();
                    return Err(WatchError::Lagged { oldest });
                }
                return Ok(None);
            };
            if matches!(
                header.kind,
                FrameKind::Pad | FrameKind::Stage | FrameKind::StageAbort
            ) {
                continue;
            }
            // A frame without a mutation is reported where it is.
            let at = self.consumer.current_position();
            let frame = self.consumer.current()?;
            // Only pads have no mutation, and they were skipped above.
            let mutation = frame.mutation().ok_or(WatchError::Corrupt { at })?;
            return Ok(Some(Change {
                seq: header.seq,
                term: header.term,
                version: header.version,
                time: Time(header.time_ns),
                mutation,
                staged: header.flags & FLAG_STAGED != 0,
                more: header.flags & FLAG_MORE != 0,
            }));
        }
    }

    /// Waits for a change: spins up to `spin`, then sleeps (futex) up to
    /// `timeout` in all. Returns true if the log has frames past this
    /// watcher's position; they may be only internal ones (the stages of a
    /// large write, padding) that [`Self::next_change`] consumes and returns
    /// `Ok(None)` for, so loop: wait, then drain `next_change`.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// use std::time::Duration;
    /// let changes = active.watch();
    /// assert!(!changes.wait(Duration::from_millis(10), Duration::ZERO)); // timed out
    /// active.create_section(b"k", Time::END, b"v")?;
    /// assert!(changes.wait(Duration::from_secs(1), Duration::from_micros(50)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, timeout: Duration, spin: Duration) -> bool {
        let start = Instant::now();
        if self.moved() {
            return true;
        }
        if self.consumer.wait(timeout, spin) && self.consumer.has_next() {
            return true;
        }
        if self.moved() {
            return true;
        }
        if self.consumer.is_superseded() {
            // Its file was superseded (the consumer's wait returns at once
            // on such a file) and the handle stays on it (another
            // incarnation has the name, or the next file is not ready):
            // nothing comes, so the wait is the caller's timeout.
            std::thread::sleep(timeout.saturating_sub(start.elapsed()));
            return self.moved();
        }
        false
    }

    /// True if the checkpoint's handle moved on from the file this watcher
    /// follows (a snapshot rebuilt its replica: `follow.rs`).
    fn moved(&self) -> bool {
        self.checkpoint.files.current().1 != self.file
    }

    /// Catches up after `Lagged`: copies the checkpoint's sections while
    /// writers go on (the returned snapshot: the state to take over) and
    /// resumes after exactly the changes the copy holds, none lost, none
    /// repeated.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let mut changes = active.watch();
    /// active.create_section(b"k", Time::END, b"v1")?;
    /// // (After `Err(WatchError::Lagged { .. })`; here it is called unprompted.)
    /// let snapshot = changes.resync()?;
    /// assert_eq!(snapshot.sections.len(), 1);
    /// assert_eq!(snapshot.sections[0].id, b"k");
    /// assert_eq!(snapshot.sections[0].data, b"v1");
    /// assert!(changes.next_change()?.is_none()); // the create is in the snapshot
    /// active.overwrite(b"k", b"v2")?;
    /// assert!(changes.next_change()?.is_some()); // later changes follow
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resync(&mut self) -> Result<ckpt_shm::Snapshot, ReadError> {
        let (segment, file) = self.checkpoint.files.current();
        if file != self.file {
            (self.file, self.consumer) = (file, segment.consumer(None));
        }
        self.consumer.resync().map_err(read_fail)
    }

    /// The log position of the next change.
    ///
    /// ```
    /// # use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};
    /// # let dir = tempfile::tempdir()?;
    /// # let service = Service::with_config(Config::with_dir(dir.path()));
    /// # let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    /// # let active = service.open("safCkpt=doc", rwc, Some(&CreationAttributes::new(4, 16)))?;
    /// # active.set_active_replica()?;
    /// let mut changes = active.watch();
    /// let start = changes.position();
    /// active.create_section(b"k", Time::END, b"v")?;
    /// assert_eq!(changes.position(), start); // not consumed yet
    /// changes.next_change()?;
    /// assert!(changes.position() > start);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> WatchPosition {
        WatchPosition {
            file: self.file,
            at: self.consumer.position(),
        }
    }
}

/// Where a [`Watcher`] stands: a position in the log of one of its
/// checkpoint handle's files (`follow.rs`), for [`Checkpoint::watch_from`].
/// Later positions compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchPosition {
    file: u32,
    at: u64,
}

impl WatchPosition {
    /// The byte position in that file's log ring.
    pub fn log_position(&self) -> u64 {
        self.at
    }
}
