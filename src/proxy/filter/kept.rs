//! State a filter keeps across reloads: what the filter of the same route, in the same place of
//! its chain, with the same name and the same keys, held before the conf was reloaded (a rate
//! limit's buckets: a reload must not hand every client a fresh burst). A filter whose route or
//! keys changed starts afresh; what no filter of the new conf takes is dropped with the old one.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

type Value = Arc<dyn Any + Send + Sync>;

/// The state the filters of one conf keep, by filter.
#[derive(Default)]
pub struct Kept(HashMap<String, Value>);

/// Hands out kept state while one conf's filters are built.
pub(crate) struct Keeper<'a> {
    previous: Option<&'a Kept>,
    taken: RefCell<Kept>,
}

impl<'a> Keeper<'a> {
    /// Builds filters after `previous` (the running conf's), or afresh.
    pub(crate) fn new(previous: Option<&'a Kept>) -> Keeper<'a> {
        Keeper {
            previous,
            taken: RefCell::default(),
        }
    }

    /// What the filters built took: the new conf's to keep.
    pub(crate) fn into_kept(self) -> Kept {
        self.taken.into_inner()
    }

    /// The value kept under `key` if it is a `T`, else `make()`'s; kept for the next reload.
    pub(crate) fn keep<T: Any + Send + Sync>(
        &self,
        key: String,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let value = self
            .previous
            .and_then(|p| p.0.get(&key))
            .and_then(|v| v.clone().downcast::<T>().ok())
            .unwrap_or_else(|| Arc::new(make()));
        self.taken.borrow_mut().0.insert(key, value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_carries_over_under_its_key_and_type_only() {
        let first = Keeper::new(None);
        let a = first.keep("a".into(), || 1u32);
        let _ = first.keep("b".into(), || 2u32);
        let kept = first.into_kept();

        let second = Keeper::new(Some(&kept));
        assert!(Arc::ptr_eq(&a, &second.keep("a".into(), || 9u32)));
        assert_eq!(*second.keep("b".into(), || "other type"), "other type");
        assert_eq!(*second.keep("c".into(), || 3u32), 3);
        let kept = second.into_kept();
        assert_eq!(kept.0.len(), 3);

        let third = Keeper::new(Some(&kept));
        assert_eq!(*third.keep("x".into(), || 4u32), 4);
        assert_eq!(third.into_kept().0.len(), 1, "what nobody took is dropped");
    }
}
