//! Who is connected, on which device. Kept in memory so presence polls and call routing never
//! scan sockets.

use dashmap::DashMap;
use socketioxide::socket::Sid;

#[derive(Clone, Debug)]
struct Conn {
    sid: Sid,
    device: String,
}

/// The device a socket counts as when its token names none: the socket itself.
pub fn socket_device(sid: &str) -> String {
    format!("~{sid}")
}

/// Whether a device id is a socket of a token without `did` (see [`socket_device`]).
pub fn is_socket_device(device: &str) -> bool {
    device.starts_with('~')
}

#[derive(Default)]
pub struct Presence {
    users: DashMap<String, Vec<Conn>>,
}

impl Presence {
    pub fn add(&self, user: &str, device: &str, sid: Sid) {
        self.users.entry(user.to_string()).or_default().push(Conn {
            sid,
            device: device.to_string(),
        });
    }

    /// Removes a socket. Returns its device if that was the device's last socket.
    pub fn remove(&self, user: &str, sid: Sid) -> Option<String> {
        let mut gone = None;
        if let Some(mut conns) = self.users.get_mut(user) {
            if let Some(i) = conns.iter().position(|c| c.sid == sid) {
                let c = conns.swap_remove(i);
                if !conns.iter().any(|o| o.device == c.device) {
                    gone = Some(c.device);
                }
            }
        }
        self.users.remove_if(user, |_, conns| conns.is_empty());
        gone
    }

    pub fn device_online(&self, user: &str, device: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|c| c.iter().any(|c| c.device == device))
    }

    pub fn sockets(&self, user: &str) -> Vec<Sid> {
        self.users
            .get(user)
            .map(|c| c.iter().map(|c| c.sid).collect())
            .unwrap_or_default()
    }

    /// Every socket of a user with its device.
    pub fn sockets_by_device(&self, user: &str) -> Vec<(Sid, String)> {
        self.users
            .get(user)
            .map(|c| c.iter().map(|c| (c.sid, c.device.clone())).collect())
            .unwrap_or_default()
    }

    /// Sockets whose device passes `keep`.
    pub fn sockets_where(&self, user: &str, keep: impl Fn(&str) -> bool) -> Vec<Sid> {
        self.users
            .get(user)
            .map(|c| {
                c.iter()
                    .filter(|c| keep(&c.device))
                    .map(|c| c.sid)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The socket devices of a user's sockets without `did` (each its own device).
    pub fn socket_devices(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|c| {
                c.iter()
                    .filter(|c| is_socket_device(&c.device))
                    .map(|c| c.device.clone())
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
