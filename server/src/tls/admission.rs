//! Which connections may hold a slot: a client without a certificate is a
//! stranger, and strangers must never take the slots the fleet needs.
//!
//! From accept until its handshake proves a client certificate, a
//! connection counts against its source address, at most
//! `per_address` at once: one host cannot hold more than that, whether it
//! stalls handshakes or trickles bodies. A connection that finishes its
//! handshake without a certificate (enrollment, the dashboard, operator
//! tokens) also needs one of `max` anonymous slots, so the rest of the
//! listener's slots stay for certified nodes and operators, whatever many
//! addresses do. A certified connection gives its address slot back and
//! counts only against the listener's total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits on connections without a client certificate (TLS only: plain
/// HTTP trusts every caller, and a proxy in front of it sets its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousLimits {
    /// Connections that finished a handshake without a certificate, all
    /// addresses together.
    pub max: usize,
    /// Connections of one source address not (yet) proven certified.
    pub per_address: usize,
}

/// Anonymous connections at most, out of `max_connections`, when the
/// `max_anonymous_connections` key is not set: a quarter, so three quarters
/// of the slots stay for certified peers.
pub fn default_anonymous_share(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// The counts behind [`AnonymousLimits`], shared by a listener's connections.
#[derive(Debug)]
pub struct Admission {
    limits: AnonymousLimits,
    unproven: Mutex<HashMap<IpAddr, usize>>,
    anonymous: Arc<Semaphore>,
}

/// A connection not yet proven certified, counted against its address
/// until it is dropped or proves a certificate.
#[derive(Debug)]
pub struct Unproven {
    admission: Arc<Admission>,
    ip: IpAddr,
}

/// A connection served without a client certificate: its address count
/// and one anonymous slot, both given back when it closes.
#[derive(Debug)]
pub struct Anonymous {
    _unproven: Unproven,
    _slot: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(limits: AnonymousLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            unproven: Mutex::default(),
            anonymous: Arc::new(Semaphore::new(limits.max.max(1))),
        })
    }

    /// A just-accepted connection from `ip`, or `None` when that address
    /// already holds `per_address` unproven connections.
    pub fn accept(self: &Arc<Self>, ip: IpAddr) -> Option<Unproven> {
        let mut counts = self.counts();
        let held = counts.entry(ip).or_default();
        if *held >= self.limits.per_address {
            return None;
        }
        *held += 1;
        Some(Unproven {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// Unproven connections of `ip` now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip).copied().unwrap_or(0)
    }

    /// Anonymous connections being served now.
    pub fn anonymous(&self) -> usize {
        self.limits
            .max
            .max(1)
            .saturating_sub(self.anonymous.available_permits())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is consistent after every statement; a panic elsewhere
        // while it was held does not make it wrong.
        self.unproven
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Unproven {
    /// The handshake proved a certificate: the address count is given back.
    pub fn certified(self) {}

    /// The handshake ended without a certificate: an anonymous slot, or
    /// `None` when all of them are taken (and the connection is closed).
    pub fn anonymous(self) -> Option<Anonymous> {
        let slot = Arc::clone(&self.admission.anonymous)
            .try_acquire_owned()
            .ok()?;
        Some(Anonymous {
            _unproven: self,
            _slot: slot,
        })
    }
}

impl Drop for Unproven {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        if let Some(held) = counts.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_holds_at_most_its_share_until_a_connection_goes() {
        let admission = Admission::new(AnonymousLimits {
            max: 10,
            per_address: 2,
        });
        let first = admission.accept(ip(2)).unwrap();
        let _second = admission.accept(ip(2)).unwrap();
        assert!(admission.accept(ip(2)).is_none(), "a third is refused");
        assert!(admission.accept(ip(3)).is_some(), "another address is not");
        drop(first);
        assert_eq!(admission.held_by(ip(2)), 1);
        assert!(admission.accept(ip(2)).is_some());
    }

    #[test]
    fn a_certified_connection_gives_its_address_slot_back() {
        let admission = Admission::new(AnonymousLimits {
            max: 10,
            per_address: 1,
        });
        admission.accept(ip(2)).unwrap().certified();
        assert_eq!(admission.held_by(ip(2)), 0);
        let anonymous = admission.accept(ip(2)).unwrap().anonymous().unwrap();
        assert_eq!(admission.held_by(ip(2)), 1, "an anonymous one keeps it");
        assert_eq!(admission.anonymous(), 1);
        drop(anonymous);
        assert_eq!(admission.held_by(ip(2)), 0);
        assert_eq!(admission.anonymous(), 0);
        assert!(admission.counts().is_empty(), "no address is remembered");
    }

    #[test]
    fn anonymous_connections_of_all_addresses_share_max_slots() {
        let admission = Admission::new(AnonymousLimits {
            max: 2,
            per_address: 5,
        });
        let held: Vec<Anonymous> = (2..4)
            .map(|last| admission.accept(ip(last)).unwrap().anonymous().unwrap())
            .collect();
        let refused = admission.accept(ip(4)).unwrap().anonymous();
        assert!(refused.is_none(), "the anonymous share is full");
        assert_eq!(
            admission.held_by(ip(4)),
            0,
            "the refused one is not counted"
        );
        // A certified connection from anywhere is not affected.
        admission.accept(ip(4)).unwrap().certified();
        drop(held);
        assert!(admission.accept(ip(4)).unwrap().anonymous().is_some());
    }

    #[test]
    fn the_default_share_leaves_three_quarters_for_certified_peers() {
        assert_eq!(default_anonymous_share(16_384), 4096);
        assert_eq!(default_anonymous_share(3), 1);
    }
}
