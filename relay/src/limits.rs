//! Bounds on open streams, per client and in total. A [`StreamPermit`] holds one slot until
//! it is dropped. Who counts as a client is decided by the server, not here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why no slot was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The client already holds its share.
    #[error("too many open streams for this client (limit {limit}); close one and retry")]
    PerClient {
        /// The per-client limit.
        limit: usize,
    },
    /// The relay is full.
    #[error("the relay is serving its limit of {limit} streams; retry later")]
    Total {
        /// The total limit.
        limit: usize,
    },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<String, usize>,
}

/// Stream slots per client and in total.
#[derive(Debug)]
pub struct StreamLimits {
    per_client: usize,
    total: usize,
    counts: Mutex<Counts>,
}

impl StreamLimits {
    /// Limits of `per_client` streams for one client and `total` for everyone.
    pub fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(StreamLimits {
            per_client,
            total,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for `client`, or says which limit is reached.
    pub fn acquire(self: &Arc<Self>, client: &str) -> Result<StreamPermit, LimitError> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.total >= self.total {
            return Err(LimitError::Total { limit: self.total });
        }
        let mine = counts.per_client.get(client).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Err(LimitError::PerClient {
                limit: self.per_client,
            });
        }
        counts.total += 1;
        counts.per_client.insert(client.to_string(), mine + 1);
        Ok(StreamPermit {
            limits: Arc::clone(self),
            client: client.to_string(),
        })
    }

    /// Streams open now in total.
    pub fn open(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    client: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_client_over_its_share_but_not_others() {
        let limits = StreamLimits::new(2, 10);
        let _a1 = limits.acquire("alice").unwrap();
        let _a2 = limits.acquire("alice").unwrap();
        assert_eq!(
            limits.acquire("alice").unwrap_err(),
            LimitError::PerClient { limit: 2 }
        );
        assert!(limits.acquire("bob").is_ok());
    }

    #[test]
    fn refuses_everyone_when_full() {
        let limits = StreamLimits::new(5, 2);
        let _a = limits.acquire("alice").unwrap();
        let _b = limits.acquire("bob").unwrap();
        assert_eq!(
            limits.acquire("carol").unwrap_err(),
            LimitError::Total { limit: 2 }
        );
    }

    #[test]
    fn dropping_a_permit_frees_its_slot() {
        let limits = StreamLimits::new(1, 1);
        let permit = limits.acquire("alice").unwrap();
        assert!(limits.acquire("alice").is_err());
        drop(permit);
        assert_eq!(limits.open(), 0);
        assert!(limits.acquire("alice").is_ok());
    }
}
