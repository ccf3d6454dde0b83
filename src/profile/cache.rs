//! The profile cache every request reads (see [`Profiles`]).

use dashmap::DashMap;

use crate::store::{ClaimedProfile, Store, UserRow};

/// Profiles kept in memory, so an unchanged token writes nothing and events carry current names.
/// A user's entry goes when their last socket closes; users who only use REST are bounded by
/// this many, past which the cache starts over (it only saves reads and writes).
const MAX_CACHED: usize = 10_000;

#[derive(Default)]
pub struct Profiles {
    users: DashMap<String, Cached>,
}

struct Cached {
    /// The claims this row was last written from (external tokens).
    claimed: Option<(String, String, String)>,
    row: UserRow,
}

impl Profiles {
    pub fn get(&self, id: &str) -> Option<UserRow> {
        self.users.get(id).map(|c| c.row.clone())
    }

    pub fn put(&self, row: UserRow) {
        self.bound();
        self.users
            .insert(row.id.clone(), Cached { claimed: None, row });
    }

    /// The stored profile of an external token's user, writing only when its claims changed.
    pub async fn remember(&self, store: &Store, c: &ClaimedProfile<'_>) -> sqlx::Result<UserRow> {
        let key = (
            c.full_name.to_string(),
            c.identifier.to_string(),
            c.img.to_string(),
        );
        if let Some(hit) = self.users.get(c.id) {
            if hit.claimed.as_ref() == Some(&key) {
                return Ok(hit.row.clone());
            }
        }
        let row = store.upsert_user(c).await?;
        self.bound();
        self.users.insert(
            row.id.clone(),
            Cached {
                claimed: Some(key),
                row: row.clone(),
            },
        );
        Ok(row)
    }

    /// After a profile edit: the next read goes to the store.
    pub fn forget(&self, id: &str) {
        self.users.remove(id);
    }

    /// After a profile edit: the stored row, so events at once carry the new name or image.
    pub async fn refresh(&self, store: &Store, id: &str) -> sqlx::Result<()> {
        match store.user(id).await? {
            Some(row) => self.put(row),
            None => self.forget(id),
        }
        Ok(())
    }

    fn bound(&self) {
        if self.users.len() >= MAX_CACHED {
            self.users.clear();
            // A cleared table keeps its size; give the memory back.
            self.users.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
