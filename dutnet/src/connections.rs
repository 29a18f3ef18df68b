//! Bounded connection tables: DNS over TCP and the control socket admit
//! every new connection through one.
//!
//! A server that keeps idle connections forever, or refuses new ones once a
//! cap is reached, is locked out by one client that opens many and sends
//! nothing (64 idle TCP connections used to lock DNS over TCP out for the
//! whole idle timeout). So each table has a cap per client and a cap in
//! total, closes a connection that waits longer than the idle timeout for
//! its next request, and at a cap closes the connection that has been idle
//! longest to make room instead of refusing the new one, as RFC 7766 §6.2.3
//! allows a server under pressure to do. The per-client cap comes first:
//! a client at its cap loses its own oldest idle connection, never someone
//! else's. A connection busy with a request is never closed for room; when
//! every connection in the way is busy the new one is refused, and busy
//! connections end by themselves within their I/O and request timeouts.
use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// The bounds of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, every client together.
    pub total: usize,
    /// Connections one client may hold at once.
    pub per_client: usize,
    /// A connection that waits this long for its next request is closed.
    pub idle_timeout: Duration,
}

/// The open connections of one server, by client (a source address, a uid).
#[derive(Debug)]
pub struct ConnectionTable<K> {
    limits: Limits,
    state: Arc<Mutex<State<K>>>,
}

#[derive(Debug)]
struct State<K> {
    next_id: u64,
    open: HashMap<u64, Open<K>>,
}

#[derive(Debug)]
struct Open<K> {
    client: K,
    /// `Some` while the connection waits for a request.
    idle_since: Option<Instant>,
    close: Arc<Notify>,
}

/// What became of a new connection.
#[derive(Debug)]
pub enum Admission<K> {
    /// Serve it, holding `slot`; `closed_for_room` are the clients whose
    /// idle connections were closed to make room (for the log).
    Admitted {
        slot: Slot<K>,
        closed_for_room: Vec<K>,
    },
    /// Every connection in the way is busy: close the new one.
    Refused,
}

impl<K: Clone + Eq + Hash> ConnectionTable<K> {
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Arc::new(Mutex::new(State {
                next_id: 0,
                open: HashMap::new(),
            })),
        }
    }

    /// Admits a new connection of `client`, closing idle ones for room.
    pub fn admit(&self, client: K) -> Admission<K> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed_for_room = Vec::new();
        let own = state.open.values().filter(|o| o.client == client).count();
        if own >= self.limits.per_client {
            match state.longest_idle(|o| o.client == client) {
                Some(id) => closed_for_room.extend(state.close(id)),
                None => return Admission::Refused,
            }
        }
        if state.open.len() >= self.limits.total {
            match state.longest_idle(|_| true) {
                Some(id) => closed_for_room.extend(state.close(id)),
                None => return Admission::Refused,
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let close = Arc::new(Notify::new());
        state.open.insert(
            id,
            Open {
                client,
                // Waiting for its first request: as idle as can be.
                idle_since: Some(Instant::now()),
                close: Arc::clone(&close),
            },
        );
        Admission::Admitted {
            slot: Slot {
                id,
                state: Arc::clone(&self.state),
                close,
                idle_timeout: self.limits.idle_timeout,
            },
            closed_for_room,
        }
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }
}

impl<K> State<K> {
    fn longest_idle(&self, mut of: impl FnMut(&Open<K>) -> bool) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, o)| of(o))
            .filter_map(|(id, o)| o.idle_since.map(|since| (since, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Forgets connection `id` and tells it to close; returns its client.
    fn close(&mut self, id: u64) -> Option<K> {
        let open = self.open.remove(&id)?;
        // A stored permit: the connection sees it at its next wait even if
        // it is not waiting at this very moment.
        open.close.notify_one();
        Some(open.client)
    }
}

/// One admitted connection's place in its table; dropping it frees the place.
#[derive(Debug)]
pub struct Slot<K> {
    id: u64,
    state: Arc<Mutex<State<K>>>,
    close: Arc<Notify>,
    idle_timeout: Duration,
}

impl<K> Slot<K> {
    /// Waits for the start of the next request with `read`. `None`: the
    /// idle timeout passed or the connection was closed to make room; the
    /// caller closes it. While waiting the connection may be closed for
    /// room; once `read` is done it is busy until the next call.
    pub async fn next_request<F: Future>(&self, read: F) -> Option<F::Output> {
        self.set_idle(true);
        let outcome = tokio::select! {
            () = self.close.notified() => None,
            read = tokio::time::timeout(self.idle_timeout, read) => read.ok(),
        };
        self.set_idle(false);
        outcome
    }

    fn set_idle(&self, idle: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = state.open.get_mut(&self.id) {
            open.idle_since = idle.then(Instant::now);
        }
    }
}

impl<K> Drop for Slot<K> {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        total: 4,
        per_client: 2,
        idle_timeout: Duration::from_secs(5),
    };

    fn admitted(admission: Admission<&'static str>) -> (Slot<&'static str>, Vec<&'static str>) {
        match admission {
            Admission::Admitted {
                slot,
                closed_for_room,
            } => (slot, closed_for_room),
            Admission::Refused => panic!("refused"),
        }
    }

    /// True when the slot was told to close: its wait ends at once instead
    /// of at the idle timeout (time is paused and jumps to the next timer).
    async fn was_closed(slot: &Slot<&'static str>) -> bool {
        let started = Instant::now();
        let read = slot.next_request(std::future::pending::<()>()).await;
        read.is_none() && started.elapsed() == Duration::ZERO
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_at_its_cap_loses_its_own_longest_idle_connection() {
        let table = ConnectionTable::new(LIMITS);
        let (first, _) = admitted(table.admit("a"));
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_second, _) = admitted(table.admit("a"));
        let (_other, _) = admitted(table.admit("b"));
        let (_third, closed) = admitted(table.admit("a"));
        assert_eq!(closed, ["a"]);
        assert_eq!(table.open(), 3);
        assert!(was_closed(&first).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_closes_the_longest_idle_and_never_a_busy_one() {
        let table = ConnectionTable::new(LIMITS);
        let (busy, _) = admitted(table.admit("a"));
        // Busy: inside a request (between two waits).
        busy.set_idle(false);
        tokio::time::advance(Duration::from_millis(10)).await;
        let (idle, _) = admitted(table.admit("b"));
        let (_c, _) = admitted(table.admit("c"));
        let (_d, _) = admitted(table.admit("d"));
        let (_e, closed) = admitted(table.admit("e"));
        assert_eq!(closed, ["b"], "the longest idle, not the older busy one");
        assert!(was_closed(&idle).await);
        assert_eq!(table.open(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn when_everything_in_the_way_is_busy_the_new_connection_is_refused() {
        let table = ConnectionTable::new(LIMITS);
        let slots: Vec<_> = ["a", "a"].map(|c| admitted(table.admit(c)).0).into();
        for slot in &slots {
            slot.set_idle(false);
        }
        assert!(matches!(table.admit("a"), Admission::Refused));
        assert!(matches!(table.admit("b"), Admission::Admitted { .. }));
        drop(slots);
        assert_eq!(table.open(), 0, "dropped slots free their places");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_a_request_in_time_is_read() {
        let table = ConnectionTable::new(LIMITS);
        let (slot, _) = admitted(table.admit("a"));
        let read = slot.next_request(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            7
        });
        assert_eq!(read.await, Some(7));
        let started = Instant::now();
        assert!(
            slot.next_request(std::future::pending::<()>())
                .await
                .is_none()
        );
        assert_eq!(started.elapsed(), LIMITS.idle_timeout);
    }
}
