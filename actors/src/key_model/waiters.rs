//! A bounded FIFO of requests waiting for a key/model slot.
//!
//! Plain data: the actor decides when the head may go; this type only keeps order, bounds
//! the length, and lets waiters leave (deadline passed, client gone) without disturbing
//! anybody else's place.

use std::collections::VecDeque;

use crate::clock::Millis;

/// Something that can tell whether the waiting party has gone away.
pub trait WaiterHandle {
    /// True once nobody will take the grant (the receiver was dropped).
    fn is_gone(&self) -> bool;
}

impl<T> WaiterHandle for tokio::sync::oneshot::Sender<T> {
    fn is_gone(&self) -> bool {
        self.is_closed()
    }
}

/// One waiting request.
#[derive(Debug)]
pub struct Waiter<T> {
    /// Identifier for cancellation.
    pub id: u64,
    /// When it joined the queue.
    pub enqueued_at: Millis,
    /// When its request gives up.
    pub deadline: Millis,
    /// The latest start it accepts here (its wait budget, when another candidate could
    /// serve it within that); the deadline when it takes any start before that.
    pub latest_start: Millis,
    /// Since when it has been at the head held back by a rate limit or pause.
    pub rate_blocked_since: Option<Millis>,
    /// Time spent at the head held back by a rate limit or pause, closed intervals only.
    pub rate_waited: Millis,
    /// Whatever the owner needs to answer it.
    pub handle: T,
}

/// Returned when the queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue full ({capacity} waiting)")]
pub struct QueueFull {
    /// The bound.
    pub capacity: usize,
}

/// The FIFO itself.
#[derive(Debug)]
pub struct WaiterQueue<T> {
    queue: VecDeque<Waiter<T>>,
    capacity: usize,
    next_id: u64,
}

impl<T: WaiterHandle> WaiterQueue<T> {
    /// An empty queue holding at most `capacity` waiters.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 1,
        }
    }

    /// Number of waiters.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the bound; waiters already queued keep their places.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Appends a waiter at the tail.
    pub fn push(
        &mut self,
        now: Millis,
        deadline: Millis,
        latest_start: Option<Millis>,
        handle: T,
    ) -> Result<u64, QueueFull> {
        if self.queue.len() >= self.capacity {
            return Err(QueueFull {
                capacity: self.capacity,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Waiter {
            id,
            enqueued_at: now,
            deadline,
            latest_start: latest_start.unwrap_or(deadline),
            rate_blocked_since: None,
            rate_waited: 0,
            handle,
        });
        Ok(id)
    }

    /// Removes the waiter with this id, wherever it is.
    pub fn remove(&mut self, id: u64) -> Option<Waiter<T>> {
        let pos = self.queue.iter().position(|w| w.id == id)?;
        self.queue.remove(pos)
    }

    /// Drops waiters whose party has gone and returns those whose deadline has passed.
    pub fn sweep(&mut self, now: Millis) -> Vec<Waiter<T>> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for w in self.queue.drain(..) {
            if w.handle.is_gone() {
                continue;
            }
            if w.deadline <= now {
                expired.push(w);
            } else {
                kept.push_back(w);
            }
        }
        self.queue = kept;
        expired
    }

    /// The head, if any.
    pub fn head_mut(&mut self) -> Option<&mut Waiter<T>> {
        self.queue.front_mut()
    }

    /// Takes the head.
    pub fn pop(&mut self) -> Option<Waiter<T>> {
        self.queue.pop_front()
    }

    /// Removes and returns every waiter for which `f` is true, keeping the others' order.
    pub fn extract_if(&mut self, mut f: impl FnMut(&Waiter<T>) -> bool) -> Vec<Waiter<T>> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for w in self.queue.drain(..) {
            if f(&w) {
                out.push(w);
            } else {
                kept.push_back(w);
            }
        }
        self.queue = kept;
        out
    }

    /// Position (0 = head) of a waiter.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.queue.iter().position(|w| w.id == id)
    }

    /// How long the head has waited so far.
    pub fn oldest_wait(&self, now: Millis) -> Millis {
        self.queue.front().map_or(0, |w| now - w.enqueued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Debug, Clone)]
    struct H(Rc<Cell<bool>>);
    impl WaiterHandle for H {
        fn is_gone(&self) -> bool {
            self.0.get()
        }
    }
    fn h() -> (H, Rc<Cell<bool>>) {
        let c = Rc::new(Cell::new(false));
        (H(c.clone()), c)
    }

    #[test]
    fn the_heads_wait_and_a_changed_bound() {
        let mut q = WaiterQueue::new(1);
        assert_eq!(q.oldest_wait(50), 0);
        q.push(10, 100, None, h().0).unwrap();
        assert_eq!(q.oldest_wait(50), 40);
        assert!(q.push(11, 100, None, h().0).is_err());
        q.set_capacity(2);
        assert_eq!(q.capacity(), 2);
        assert!(q.push(11, 100, None, h().0).is_ok());
    }

    #[test]
    fn a_oneshot_waiter_is_gone_once_its_receiver_is_dropped() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(!tx.is_gone());
        drop(rx);
        assert!(tx.is_gone());
    }

    #[test]
    fn fifo_order_and_bound() {
        let mut q = WaiterQueue::new(2);
        let a = q.push(0, 100, None, h().0).unwrap();
        let b = q.push(1, 100, None, h().0).unwrap();
        assert_eq!(q.push(2, 100, None, h().0), Err(QueueFull { capacity: 2 }));
        assert_eq!(q.pop().map(|w| w.id), Some(a));
        assert_eq!(q.pop().map(|w| w.id), Some(b));
        assert!(q.is_empty());
    }

    #[test]
    fn sweep_drops_gone_and_returns_expired_keeping_order() {
        let mut q = WaiterQueue::new(10);
        let (gone, flag) = h();
        q.push(0, 1_000, None, h().0).unwrap();
        q.push(0, 1_000, None, gone).unwrap();
        q.push(0, 50, None, h().0).unwrap();
        let d = q.push(0, 1_000, None, h().0).unwrap();
        flag.set(true);
        let expired = q.sweep(100);
        assert_eq!(expired.len(), 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.position(d), Some(1));
    }

    #[test]
    fn remove_leaves_others_in_place() {
        let mut q = WaiterQueue::new(10);
        let a = q.push(0, 10, None, h().0).unwrap();
        let b = q.push(0, 10, None, h().0).unwrap();
        let c = q.push(0, 10, None, h().0).unwrap();
        assert!(q.remove(b).is_some());
        assert!(q.remove(b).is_none());
        assert_eq!(q.position(a), Some(0));
        assert_eq!(q.position(c), Some(1));
    }
}
