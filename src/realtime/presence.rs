//! Who is connected, on which device. Kept in memory so presence polls and call routing never
//! scan sockets. In a cluster it also holds the other nodes' sockets (a replica fed by the
//! cluster bus), so every question about who is online has the cluster's answer.

use std::sync::Arc;

use dashmap::DashMap;
use socketioxide::socket::Sid;

#[derive(Clone, Debug)]
struct Conn {
    sid: Sid,
    device: String,
    /// The node the socket is on; `None`: this one.
    node: Option<Arc<str>>,
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
    /// The run of each socket on another node, so an emit to a socket finds its node without
    /// knowing its user.
    runs: DashMap<Sid, Arc<str>>,
}

impl Presence {
    pub fn add(&self, user: &str, device: &str, sid: Sid) {
        self.users.entry(user.to_string()).or_default().push(Conn {
            sid,
            device: device.to_string(),
            node: None,
        });
    }

    /// A socket on another node (told twice, kept once).
    pub fn add_remote(&self, node: &str, user: &str, device: &str, sid: Sid) {
        let mut conns = self.users.entry(user.to_string()).or_default();
        if !conns.iter().any(|c| c.sid == sid) {
            let node: Arc<str> = node.into();
            self.runs.insert(sid, node.clone());
            conns.push(Conn {
                sid,
                device: device.to_string(),
                node: Some(node),
            });
        }
    }

    /// Drops every socket of the nodes `dead` says are gone. Returns the (user, device) pairs
    /// that lost their last socket.
    pub fn purge(&self, dead: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for mut entry in self.users.iter_mut() {
            let before: Vec<String> = entry.iter().map(|c| c.device.clone()).collect();
            entry.retain(|c| {
                let keep = !c.node.as_deref().is_some_and(&dead);
                if !keep {
                    self.runs.remove(&c.sid);
                }
                keep
            });
            // (Sockets of this node have no `node` and are never purged.)
            for device in before {
                if !entry.iter().any(|c| c.device == device)
                    && !gone.iter().any(|(u, d)| u == entry.key() && *d == device)
                {
                    gone.push((entry.key().clone(), device));
                }
            }
        }
        self.users.retain(|_, conns| !conns.is_empty());
        gone
    }

    /// Whether the socket is on this node.
    pub fn is_local(&self, user: &str, sid: Sid) -> bool {
        self.users
            .get(user)
            .is_some_and(|c| c.iter().any(|c| c.sid == sid && c.node.is_none()))
    }

    /// Removes a socket. Returns its device if that was the device's last socket.
    pub fn remove(&self, user: &str, sid: Sid) -> Option<String> {
        let mut gone = None;
        if let Some(mut conns) = self.users.get_mut(user) {
            if let Some(i) = conns.iter().position(|c| c.sid == sid) {
                let c = conns.swap_remove(i);
                if c.node.is_some() {
                    self.runs.remove(&sid);
                }
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

    /// The run of the node holding a device's sockets, when they are all on other nodes (the
    /// first such socket's, if several nodes hold one). `None`: a socket of it is here, or it
    /// has none.
    pub fn remote_run_of_device(&self, user: &str, device: &str) -> Option<Arc<str>> {
        let conns = self.users.get(user)?;
        let mut run = None;
        for c in conns.iter().filter(|c| c.device == device) {
            let node = c.node.as_ref()?;
            run.get_or_insert_with(|| node.clone());
        }
        run
    }

    /// The run of the node holding a socket; `None`: it is here, or unknown.
    pub fn run_of(&self, sid: Sid) -> Option<Arc<str>> {
        self.runs.get(&sid).map(|r| r.clone())
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

    /// Users with a socket on this node.
    pub fn online_users(&self) -> usize {
        self.users
            .iter()
            .filter(|c| c.iter().any(|c| c.node.is_none()))
            .count()
    }

    /// This node's sockets: (user, device, sid).
    pub fn local_sockets(&self) -> Vec<(String, String, Sid)> {
        let mut out = Vec::new();
        for e in self.users.iter() {
            for c in e.iter().filter(|c| c.node.is_none()) {
                out.push((e.key().clone(), c.device.clone(), c.sid));
            }
        }
        out
    }

    /// Users with a socket anywhere (cluster mode: as this node's replica has them).
    pub fn all_online_users(&self) -> usize {
        self.users.len()
    }

    /// Sockets anywhere (cluster mode: as this node's replica has them).
    pub fn all_socket_count(&self) -> usize {
        self.users.iter().map(|c| c.len()).sum()
    }

    /// Sockets on other nodes (cluster mode).
    pub fn remote_socket_count(&self) -> usize {
        self.users
            .iter()
            .map(|c| c.iter().filter(|c| c.node.is_some()).count())
            .sum()
    }

    /// Sockets on this node.
    pub fn socket_count(&self) -> usize {
        self.users
            .iter()
            .map(|c| c.iter().filter(|c| c.node.is_none()).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid() -> Sid {
        Sid::new()
    }

    #[test]
    fn a_devices_remote_run_is_known_only_when_no_socket_of_it_is_here() {
        let p = Presence::default();
        assert_eq!(p.remote_run_of_device("u", "phone"), None);
        p.add_remote("n1#a", "u", "phone", sid());
        p.add_remote("n2#b", "u", "tablet", sid());
        assert_eq!(
            p.remote_run_of_device("u", "phone").as_deref(),
            Some("n1#a")
        );
        assert_eq!(
            p.remote_run_of_device("u", "tablet").as_deref(),
            Some("n2#b")
        );
        assert_eq!(p.remote_run_of_device("u", "laptop"), None);
        // A socket of the device here wins over any elsewhere.
        p.add("u", "phone", sid());
        assert_eq!(p.remote_run_of_device("u", "phone"), None);
    }

    #[test]
    fn a_remote_sockets_run_is_known_until_it_leaves_or_its_node_dies() {
        let p = Presence::default();
        let (a, b, here) = (sid(), sid(), sid());
        p.add_remote("n1#a", "u", "phone", a);
        p.add_remote("n2#b", "v", "phone", b);
        p.add("w", "phone", here);
        assert_eq!(p.run_of(a).as_deref(), Some("n1#a"));
        assert_eq!(p.run_of(b).as_deref(), Some("n2#b"));
        assert_eq!(p.run_of(here), None);
        p.remove("u", a);
        assert_eq!(p.run_of(a), None);
        p.purge(|run| run == "n2#b");
        assert_eq!(p.run_of(b), None);
        assert!(p.runs.is_empty());
    }
}
