//! A shared budget of bytes held in memory at once, across every request.
//!
//! Each request body is capped on its own (`MAX_REQUEST_BYTES`), but many bodies arriving
//! together could still hold gigabytes between them. A [`ByteBudget`] is the one counter
//! they all draw from: a reader takes a [`Reservation`] and grows it as the bytes it holds
//! grow ([`Reservation::grow_to`]); when the budget cannot cover the growth, the reader
//! stops and the request is refused (503 with `Retry-After`) instead of reading on. The
//! bytes go back to the budget when the reservation is dropped, with the body it covers.
//!
//! Lock-free: one atomic counter, a compare-and-swap per growth.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The shared budget (cheap to clone; clones share the counter).
#[derive(Debug, Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// An empty reservation on this budget.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            inner: self.inner.clone(),
            held: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n)
                    .filter(|&total| total <= self.inner.limit)
            })
            .is_ok()
    }
}

/// Bytes one reader holds of a [`ByteBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    held: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Grows the reservation to `total` bytes (a smaller `total` changes nothing).
    /// `false`, holding what it held before, when the budget cannot cover the growth.
    pub fn grow_to(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|&m| m > 0) else {
            return true;
        };
        let budget = ByteBudget {
            inner: self.inner.clone(),
        };
        if budget.take(more) {
            self.held = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_back_on_drop() {
        let budget = ByteBudget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.grow_to(60));
        assert!(!b.grow_to(41), "60 + 41 is over 100");
        assert_eq!(b.held(), 0, "a refused growth holds nothing more");
        assert!(b.grow_to(40));
        assert_eq!(budget.used(), 100);
        assert!(a.grow_to(50), "shrinking is a no-op, never a refusal");
        assert_eq!(a.held(), 60);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow_to(100));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_growth_past_usize_is_refused_not_wrapped() {
        let budget = ByteBudget::new(usize::MAX);
        let mut a = budget.reservation();
        assert!(a.grow_to(usize::MAX - 1));
        let mut b = budget.reservation();
        assert!(!b.grow_to(2));
        assert!(b.grow_to(1));
    }
}
