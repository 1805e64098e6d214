//! One error enum per operation.
//!
//! Each enum is small and `Copy`, every variant is documented, and each maps to
//! exactly one [`AisError`] through an exhaustive `match` (no `_ =>` arm), which
//! the C library uses to return `SaAisErrorT`.

use core::fmt;

use crate::ais::AisError;

/// Declares an operation's error enum: variants, their message and their code.
macro_rules! op_error {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => ($code:ident, $msg:literal),
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order: a variant's number is
            /// its place here ([`Self::number`]).
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The variant's number: its place in [`Self::ALL`] (a change a
            /// replica's node forwards to the primary comes back as one).
            pub const fn number(self) -> u32 {
                self as u32
            }

            /// The variant numbered `n`, if any.
            pub fn from_number(n: u32) -> Option<Self> {
                Self::ALL.get(n as usize).copied()
            }

            /// The `SaAisErrorT` this error is reported as.
            pub const fn ais(self) -> AisError {
                match self {
                    $( $name::$variant => AisError::$code, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let msg = match self {
                    $( $name::$variant => $msg, )+
                };
                write!(f, "{msg} [{}]", self.ais().c_name())
            }
        }

        impl core::error::Error for $name {}
    };
}

op_error! {
    /// Why `open` (`saCkptCheckpointOpen`) failed.
    pub enum OpenError {
        /// The name is empty, too long or contains NUL.
        InvalidName => (InvalidParam, "invalid checkpoint name"),
        /// The creation attributes break the spec's rules.
        InvalidAttributes => (InvalidParam, "invalid creation attributes"),
        /// The configured node id is beyond 2^31 - 1.
        InvalidNode => (InvalidParam, "the configured node id is beyond 2^31 - 1"),
        /// `CREATE` was given without creation attributes.
        MissingAttributes => (InvalidParam, "CREATE needs creation attributes"),
        /// Creation attributes were given without `CREATE`.
        UnexpectedAttributes => (InvalidParam, "creation attributes given without CREATE"),
        /// The open flags are empty or have unknown bits.
        BadFlags => (BadFlags, "open flags must be a non-empty set of READ, WRITE, CREATE"),
        /// No checkpoint of that name exists and `CREATE` was not given.
        NotExist => (NotExist, "no checkpoint of that name exists"),
        /// The checkpoint exists with different creation attributes.
        AttributesDiffer => (Exist, "checkpoint exists with different creation attributes"),
        /// The attributes exceed ckpt's capacities, the segment directory is full,
        /// or the checkpoint's table of openers is full.
        NoResources => (NoResources, "not enough resources for the checkpoint"),
        /// The segment is owned by another user or its mode is looser than allowed.
        Permission => (Access, "segment owned by another user or with looser permissions"),
        /// The segment directory is a symlink, or another user owns it, or
        /// others can write to it (with group access: others than its group).
        UntrustedDir => (
            Access,
            "segment directory untrusted: a symlink, another user's, or writable by others"
        ),
        /// The segment is not a ckpt segment, or is damaged.
        Corrupt => (Library, "segment is corrupt or not a ckpt segment"),
        /// The segment was written by an incompatible layout version.
        Incompatible => (Library, "segment has an incompatible layout version"),
        /// The segment directory could not be used.
        Io => (Library, "segment directory I/O failed"),
        /// Another process is creating or deleting the checkpoint; retry.
        TryAgain => (TryAgain, "checkpoint is being created or deleted; retry"),
        /// The checkpoint is held by another node and its replica did not
        /// arrive here within the open's timeout.
        Timeout => (
            Timeout,
            "the checkpoint is held by another node and its replica did not arrive in time"
        ),
    }
}

op_error! {
    /// Why `unlink` (`saCkptCheckpointUnlink`) failed.
    pub enum UnlinkError {
        /// The name is empty, too long or contains NUL.
        InvalidName => (InvalidParam, "invalid checkpoint name"),
        /// No checkpoint of that name exists.
        NotExist => (NotExist, "no checkpoint of that name exists"),
        /// The segment is owned by another user.
        Permission => (Access, "segment owned by another user"),
        /// The segment directory could not be used.
        Io => (Library, "segment directory I/O failed"),
        /// Another writer held the checkpoint past the timeout; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// No opener entry was free to log the unlink.
        NoResources => (NoResources, "the checkpoint's opener table is full"),
        /// This host holds a replica, and no node daemon here could reach
        /// its primary, through which it is unlinked.
        Replica => (TryAgain, "this host holds a replica and no node daemon here reaches its primary; retry"),
        /// The primary's node did not answer in time.
        Timeout => (Timeout, "the primary's node did not answer in time"),
    }
}

op_error! {
    /// Why `set_retention` (`saCkptCheckpointRetentionDurationSet`) failed.
    pub enum RetentionSetError {
        /// The duration is negative.
        InvalidParam => (InvalidParam, "retention duration is negative"),
        /// The checkpoint has been unlinked.
        Unlinked => (BadOperation, "checkpoint has been unlinked"),
        /// Another writer held the checkpoint past the timeout; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// Where only a replica is: the primary's node did not answer in
        /// time (the change may be made there or not).
        Timeout => (Timeout, "the primary's node did not answer in time"),
    }
}

op_error! {
    /// Why `set_active_replica` (`saCkptActiveReplicaSet`) failed.
    pub enum ActiveReplicaSetError {
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Only collocated, asynchronous checkpoints have a settable active replica.
        NotCollocatedAsync => (BadOperation, "checkpoint is not collocated and asynchronous"),
        /// Another writer held the checkpoint past the timeout; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
    }
}

op_error! {
    /// Why `status` (`saCkptCheckpointStatusGet`) failed.
    pub enum StatusError {
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
    }
}

op_error! {
    /// Why `create_section` (`saCkptSectionCreate`) failed.
    pub enum SectionCreateError {
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// An empty id names only the default section (checkpoints of one section).
        EmptyId => (InvalidParam, "the empty id is reserved for the default section"),
        /// The initial data is larger than `maxSectionSize`.
        DataTooLarge => (InvalidParam, "initial data larger than maxSectionSize"),
        /// The expiration time is negative.
        InvalidExpiration => (InvalidParam, "expiration time is negative"),
        /// `maxSections` sections exist already.
        NoSpace => (NoSpace, "checkpoint already has maxSections sections"),
        /// The data would make the sections exceed `checkpointSize`.
        CheckpointFull => (NoResources, "sections would exceed checkpointSize"),
        /// The segment directory's filesystem has no room left for the data.
        NoMemory => (NoResources, "no room left in the segment's filesystem for the data"),
        /// A section with this id exists, or the checkpoint has only its default section.
        Exist => (Exist, "section exists (or checkpoint has only its default section)"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Another writer held the checkpoint for too long; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// The segment is damaged.
        Corrupt => (Library, "segment is corrupt"),
        /// A synchronous checkpoint's replicas did not confirm in time (the
        /// change is made here and reaches them later).
        Timeout => (Timeout, "replicas did not confirm the change in time"),
        /// A generated id was asked for and none is free: every id
        /// `maxSectionIdSize` bytes can hold names a section (fewer than
        /// `maxSections` may exist).
        NoIdLeft => (NoResources, "no generated section id is free: maxSectionIdSize holds no more"),
    }
}

op_error! {
    /// Why `delete_section` (`saCkptSectionDelete`) failed.
    pub enum SectionDeleteError {
        /// The default section cannot be deleted.
        DefaultSection => (InvalidParam, "the default section cannot be deleted"),
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// No such section (or it has expired).
        NotExist => (NotExist, "no such section"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Another writer held the checkpoint for too long; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// The segment is damaged.
        Corrupt => (Library, "segment is corrupt"),
        /// A synchronous checkpoint's replicas did not confirm in time (the
        /// change is made here and reaches them later).
        Timeout => (Timeout, "replicas did not confirm the change in time"),
    }
}

op_error! {
    /// Why `set_expiration` (`saCkptSectionExpirationTimeSet`) failed.
    pub enum ExpirationSetError {
        /// The default section never expires.
        DefaultSection => (InvalidParam, "the default section's expiration cannot be changed"),
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// The expiration time is negative.
        InvalidExpiration => (InvalidParam, "expiration time is negative"),
        /// No such section (or it has expired).
        NotExist => (NotExist, "no such section"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Another writer held the checkpoint for too long; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// The segment is damaged.
        Corrupt => (Library, "segment is corrupt"),
        /// A synchronous checkpoint's replicas did not confirm in time (the
        /// change is made here and reaches them later).
        Timeout => (Timeout, "replicas did not confirm the change in time"),
    }
}

op_error! {
    /// Why `section` (finding a section handle) failed.
    pub enum LookupError {
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// No such section (or it has expired).
        NotExist => (NotExist, "no such section"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The index was being compacted on every bounded attempt; retry.
        TryAgain => (TryAgain, "section index busy; retry"),
    }
}

op_error! {
    /// Why `sections` (`saCkptSectionIterationInitialize`) failed.
    pub enum IterationError {
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
    }
}

op_error! {
    /// Why `write` (`saCkptCheckpointWrite`) or `overwrite`
    /// (`saCkptSectionOverwrite`) failed.
    pub enum WriteError {
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// `offset + data` would pass `maxSectionSize`.
        TooLarge => (InvalidParam, "data would pass maxSectionSize"),
        /// The sections would exceed `checkpointSize`.
        CheckpointFull => (NoResources, "sections would exceed checkpointSize"),
        /// The segment directory's filesystem has no room left for the data.
        NoMemory => (NoResources, "no room left in the segment's filesystem for the data"),
        /// No such section (or it has expired).
        NotExist => (NotExist, "no such section"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Another writer held the checkpoint for too long; retry.
        TryAgain => (TryAgain, "another writer holds the checkpoint, or this node has no quorum; retry"),
        /// The segment is damaged.
        Corrupt => (Library, "segment is corrupt"),
        /// A synchronous checkpoint's replicas did not confirm in time (the
        /// change is made here and reaches them later).
        Timeout => (Timeout, "replicas did not confirm the change in time"),
    }
}

op_error! {
    /// Why `read` (`saCkptCheckpointRead`) failed.
    pub enum ReadError {
        /// The id is longer than `maxSectionIdSize`.
        IdTooLong => (InvalidParam, "section id longer than maxSectionIdSize"),
        /// `offset + size` passes `maxSectionSize`.
        TooLarge => (InvalidParam, "read would pass maxSectionSize"),
        /// The offset is past the section's end (at the end, a read gets 0
        /// bytes), as OpenSAF and openais answer.
        OffsetPastEnd => (InvalidParam, "offset past the section's end"),
        /// No such section (or it has expired).
        NotExist => (NotExist, "no such section"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The checkpoint was not opened for reading.
        Access => (Access, "checkpoint not opened for reading"),
        /// Writers changed the section on every bounded attempt to read it; retry.
        TryAgain => (TryAgain, "section kept changing during the read; retry"),
        /// The segment is damaged.
        Corrupt => (Library, "segment is corrupt"),
    }
}

op_error! {
    /// Why `synchronize` (`saCkptCheckpointSynchronize`) failed.
    pub enum SynchronizeError {
        /// The checkpoint was not opened for writing.
        Access => (Access, "checkpoint not opened for writing"),
        /// Synchronous checkpoints need no synchronize.
        Synchronous => (BadOperation, "checkpoint is synchronous (WR_ALL_REPLICAS)"),
        /// An asynchronous checkpoint has no active replica yet.
        NoActiveReplica => (NotExist, "no active replica"),
        /// The timeout is negative.
        InvalidTimeout => (InvalidParam, "timeout is negative"),
        /// Replicas did not confirm within the timeout.
        Timeout => (Timeout, "replicas did not confirm in time"),
        /// Where only a replica is: the primary's node cannot be asked now
        /// (no node daemon here, no link to the primary, or a failover
        /// under way); retry.
        TryAgain => (TryAgain, "the primary's node cannot be asked now; retry"),
    }
}

impl WriteError {
    /// True if the error is one element's, whose index the C call reports
    /// (`erroneousVectorIndex`); false if it is the whole call's (access,
    /// no active replica, busy, timeout), which leaves the index unchanged.
    pub const fn of_element(self) -> bool {
        matches!(
            self,
            Self::IdTooLong
                | Self::TooLarge
                | Self::CheckpointFull
                | Self::NoMemory
                | Self::NotExist
        )
    }
}

impl ReadError {
    /// True if the error is one element's, whose index the C call reports
    /// (`erroneousVectorIndex`); false if it is the whole call's.
    pub const fn of_element(self) -> bool {
        matches!(
            self,
            Self::IdTooLong
                | Self::TooLarge
                | Self::OffsetPastEnd
                | Self::NotExist
                | Self::TryAgain
        )
    }
}

impl From<crate::attrs::AttributesError> for OpenError {
    /// Attributes beyond ckpt's capacities are a lack of resources; the
    /// others break the spec's rules.
    fn from(e: crate::attrs::AttributesError) -> Self {
        match e {
            crate::attrs::AttributesError::BeyondCapacity => OpenError::NoResources,
            _ => OpenError::InvalidAttributes,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_variant_round_trips_through_its_number() {
        for e in super::WriteError::ALL {
            assert_eq!(super::WriteError::from_number(e.number()), Some(*e));
        }
        for e in super::SectionCreateError::ALL {
            assert_eq!(super::SectionCreateError::from_number(e.number()), Some(*e));
        }
        let n = super::SectionDeleteError::ALL.len() as u32;
        assert_eq!(super::SectionDeleteError::from_number(n), None);
    }

    use super::*;

    #[test]
    fn variants_map_to_the_spec_codes() {
        assert_eq!(OpenError::AttributesDiffer.ais(), AisError::Exist);
        assert_eq!(OpenError::BadFlags.ais(), AisError::BadFlags);
        assert_eq!(SectionCreateError::NoSpace.ais(), AisError::NoSpace);
        assert_eq!(SectionCreateError::Exist.ais(), AisError::Exist);
        assert_eq!(
            SectionDeleteError::DefaultSection.ais(),
            AisError::InvalidParam
        );
        assert_eq!(WriteError::NoActiveReplica.ais(), AisError::NotExist);
        assert_eq!(ReadError::Access.ais(), AisError::Access);
        assert_eq!(RetentionSetError::Unlinked.ais(), AisError::BadOperation);
        assert_eq!(
            ActiveReplicaSetError::NotCollocatedAsync.ais(),
            AisError::BadOperation
        );
        assert_eq!(SynchronizeError::Synchronous.ais(), AisError::BadOperation);
    }

    #[test]
    fn messages_name_the_code() {
        assert_eq!(
            WriteError::Access.to_string(),
            "checkpoint not opened for writing [SA_AIS_ERR_ACCESS]"
        );
    }
}
