//! Handle tables: what a C handle (`SaCkptHandleT`,
//! `SaCkptCheckpointHandleT`, `SaCkptSectionIterationHandleT`) names.
//!
//! A handle is `generation << 32 | kind << 24 | index`. The generation of an
//! entry changes whenever it is freed, so a stale handle (finalized, closed)
//! never names the entry's next occupant, and the kind byte makes a handle of
//! one type passed as another fail the lookup: both give `BAD_HANDLE`, as does
//! any garbage value. Handle 0 is never issued.
//!
//! Each table holds at most [`HANDLES_MAX`] entries (then `NO_RESOURCES`).
//! A lookup takes the table's mutex and clones the entry's `Arc`, so a call in
//! progress keeps its object alive while another thread closes the handle.

use std::sync::{Arc, Mutex, MutexGuard};

/// Entries per table.
pub const HANDLES_MAX: usize = 1 << 16;

/// What a handle names (its kind byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `SaCkptHandleT`.
    Library = 0x51,
    /// `SaCkptCheckpointHandleT`.
    Checkpoint = 0x52,
    /// `SaCkptSectionIterationHandleT`.
    Iteration = 0x53,
}

struct Entry<T> {
    generation: u32,
    value: Option<Arc<T>>,
}

struct Entries<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
}

/// One kind's handles.
pub struct Table<T> {
    kind: Kind,
    inner: Mutex<Entries<T>>,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T> Table<T> {
    pub const fn new(kind: Kind) -> Self {
        Table {
            kind,
            inner: Mutex::new(Entries {
                entries: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<T>> {
        // A panic while holding the lock leaves the table consistent (every
        // update is one assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decode(&self, handle: u64) -> Option<(usize, u32)> {
        let generation = (handle >> 32) as u32;
        let kind = (handle >> 24) as u8;
        let index = (handle & 0xff_ffff) as usize;
        (kind == self.kind as u8 && generation != 0).then_some((index, generation))
    }

    /// Stores `value`; returns its new handle.
    pub fn insert(&self, value: Arc<T>) -> Result<u64, Full> {
        let mut t = self.lock();
        let index = match t.free.pop() {
            Some(i) => i as usize,
            None if t.entries.len() < HANDLES_MAX => {
                t.entries.push(Entry {
                    generation: 1,
                    value: None,
                });
                t.entries.len() - 1
            }
            None => return Err(Full),
        };
        let entry = &mut t.entries[index];
        entry.value = Some(value);
        Ok((entry.generation as u64) << 32 | (self.kind as u64) << 24 | index as u64)
    }

    /// The object `handle` names, if it is live.
    pub fn get(&self, handle: u64) -> Option<Arc<T>> {
        let (index, generation) = self.decode(handle)?;
        let t = self.lock();
        let entry = t.entries.get(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.clone()
    }

    /// Frees `handle`: later lookups fail. Returns its object.
    pub fn remove(&self, handle: u64) -> Option<Arc<T>> {
        let (index, generation) = self.decode(handle)?;
        let mut t = self.lock();
        let entry = t.entries.get_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        // Never 0: handle 0 is never valid.
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        t.free.push(index as u32);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_garbage_and_cross_kind_handles_fail() {
        let a: Table<u8> = Table::new(Kind::Library);
        let b: Table<u8> = Table::new(Kind::Checkpoint);
        let h = a.insert(Arc::new(7)).unwrap();
        assert_eq!(a.get(h).as_deref(), Some(&7));
        assert!(b.get(h).is_none(), "another kind's handle");
        for garbage in [0, 1, 12345, u64::MAX, h ^ (1 << 40)] {
            assert!(a.get(garbage).is_none(), "{garbage:#x}");
        }
        assert!(a.remove(h).is_some());
        assert!(a.get(h).is_none(), "stale");
        assert!(a.remove(h).is_none(), "freed twice");
        let h2 = a.insert(Arc::new(8)).unwrap();
        assert_ne!(h, h2, "the entry's next occupant has a new generation");
        assert!(a.get(h).is_none());
    }

    #[test]
    fn a_full_table_refuses() {
        let a: Table<()> = Table::new(Kind::Iteration);
        for _ in 0..HANDLES_MAX {
            a.insert(Arc::new(())).unwrap();
        }
        assert_eq!(a.insert(Arc::new(())), Err(Full));
    }
}
