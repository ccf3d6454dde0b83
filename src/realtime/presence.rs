//! Who is connected, on which device. Kept in memory so presence polls and call routing never
//! scan sockets.

use dashmap::DashMap;
use socketioxide::socket::Sid;

#[derive(Clone, Debug)]
struct Conn {
    sid: Sid,
    device: String,
}

#[derive(Default)]
pub struct Presence {
    users: DashMap<String, Vec<Conn>>,
    /// (user, device) → how many times that device has disconnected; a grace timer acts only if
    /// no newer disconnect or reconnect happened since it started.
    epochs: DashMap<(String, String), u64>,
}

impl Presence {
    pub fn add(&self, user: &str, device: &str, sid: Sid) {
        self.users.entry(user.to_string()).or_default().push(Conn {
            sid,
            device: device.to_string(),
        });
        *self
            .epochs
            .entry((user.to_string(), device.to_string()))
            .or_default() += 1;
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
        let key = (user.to_string(), device.clone());
        let mut epoch = self.epochs.entry(key).or_default();
        *epoch += 1;
        let e = *epoch;
        drop(epoch);
        if device_left {
            Some((device, e))
        } else {
            None
        }
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
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
