//! Who is connected, on which device. Kept in memory so presence polls and call routing never
//! scan sockets.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use socketioxide::socket::Sid;

/// Epochs come from one counter, so a value is never reused even after an entry is forgotten.
static EPOCH: AtomicU64 = AtomicU64::new(1);

fn next_epoch() -> u64 {
    EPOCH.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Debug)]
struct Conn {
    sid: Sid,
    device: String,
}

#[derive(Default)]
pub struct Presence {
    users: DashMap<String, Vec<Conn>>,
    /// (user, device) → a stamp renewed on every connect and disconnect of that device; a grace
    /// timer acts only if the stamp it saw at the disconnect is still current. Forgotten once the
    /// device is offline with nothing waiting on it.
    epochs: DashMap<(String, String), u64>,
}

impl Presence {
    pub fn add(&self, user: &str, device: &str, sid: Sid) {
        self.users.entry(user.to_string()).or_default().push(Conn {
            sid,
            device: device.to_string(),
        });
        self.epochs
            .insert((user.to_string(), device.to_string()), next_epoch());
    }

    /// Removes a socket. Returns the device's new epoch if that was its last socket.
    pub fn remove(&self, user: &str, sid: Sid) -> Option<(String, u64)> {
        let mut device = None;
        let mut device_left = false;
        if let Some(mut conns) = self.users.get_mut(user) {
            if let Some(i) = conns.iter().position(|c| c.sid == sid) {
                let c = conns.swap_remove(i);
                device_left = !conns.iter().any(|o| o.device == c.device);
                device = Some(c.device);
            }
        }
        self.users.remove_if(user, |_, conns| conns.is_empty());
        let device = device?;
        let e = next_epoch();
        self.epochs.insert((user.to_string(), device.clone()), e);
        if device_left {
            Some((device, e))
        } else {
            None
        }
    }

    pub fn device_online(&self, user: &str, device: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|c| c.iter().any(|c| c.device == device))
    }

    pub fn epoch(&self, user: &str, device: &str) -> u64 {
        self.epochs
            .get(&(user.to_string(), device.to_string()))
            .map(|e| *e)
            .unwrap_or(0)
    }

    /// Drops the stamp of a device that is offline (no timer needs it any more).
    pub fn forget(&self, user: &str, device: &str, epoch: u64) {
        self.epochs
            .remove_if(&(user.to_string(), device.to_string()), |_, e| *e == epoch);
    }

    pub fn sockets(&self, user: &str) -> Vec<Sid> {
        self.users
            .get(user)
            .map(|c| c.iter().map(|c| c.sid).collect())
            .unwrap_or_default()
    }

    /// Sockets of one device (`only`) or of every device but one (`except`).
    pub fn device_sockets(&self, user: &str, device: &str, want_device: bool) -> Vec<Sid> {
        self.users
            .get(user)
            .map(|c| {
                c.iter()
                    .filter(|c| (c.device == device) == want_device)
                    .map(|c| c.sid)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn online_users(&self) -> usize {
        self.users.len()
    }

    pub fn socket_count(&self) -> usize {
        self.users.iter().map(|c| c.len()).sum()
    }
}
