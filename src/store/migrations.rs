//! The schema migrations, embedded in the binary. sqlx's `migrate!` macro does the same, but
//! its macro crate builds a second copy of sqlx with both database drivers and SQLite's C
//! source for the compiler's host: about a minute of every cold release build. This reads the
//! files the way `migrate!` does (version, description and checksum alike), so databases
//! migrated by either agree; a test checks the lists against the directories.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

pub const SQLITE: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_devices_and_profiles.sql",
        include_str!("../../migrations/sqlite/0002_devices_and_profiles.sql"),
    ),
    (
        "0003_call_node.sql",
        include_str!("../../migrations/sqlite/0003_call_node.sql"),
    ),
    (
        "0004_groups.sql",
        include_str!("../../migrations/sqlite/0004_groups.sql"),
    ),
    (
        "0005_room_settings.sql",
        include_str!("../../migrations/sqlite/0005_room_settings.sql"),
    ),
    (
        "0006_stars.sql",
        include_str!("../../migrations/sqlite/0006_stars.sql"),
    ),
    (
        "0007_broadcasts.sql",
        include_str!("../../migrations/sqlite/0007_broadcasts.sql"),
    ),
    (
        "0008_one_seen.sql",
        include_str!("../../migrations/sqlite/0008_one_seen.sql"),
    ),
];

pub const POSTGRES: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_call_node.sql",
        include_str!("../../migrations/postgres/0002_call_node.sql"),
    ),
    (
        "0003_groups.sql",
        include_str!("../../migrations/postgres/0003_groups.sql"),
    ),
    (
        "0004_room_settings.sql",
        include_str!("../../migrations/postgres/0004_room_settings.sql"),
    ),
    (
        "0005_stars.sql",
        include_str!("../../migrations/postgres/0005_stars.sql"),
    ),
    (
        "0006_broadcasts.sql",
        include_str!("../../migrations/postgres/0006_broadcasts.sql"),
    ),
    (
        "0007_one_seen.sql",
        include_str!("../../migrations/postgres/0007_one_seen.sql"),
    ),
];

/// Migrations as (file name, SQL) pairs; file names `<version>_<description>.sql`.
#[derive(Debug)]
struct Embedded(&'static [(&'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            let mut all = Vec::with_capacity(self.0.len());
            for (file, sql) in self.0 {
                let (version, rest) = file
                    .split_once('_')
                    .ok_or_else(|| format!("migration {file:?}: no <version>_ prefix"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|_| format!("migration {file:?}: version is not a number"))?;
                let description = rest.trim_end_matches(".sql").replace('_', " ");
                all.push(Migration::new(
                    version,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    sql.starts_with("-- no-transaction"),
                ));
            }
            all.sort_by_key(|m| m.version);
            Ok(all)
        })
    }
}

pub async fn migrator(
    files: &'static [(&'static str, &'static str)],
) -> Result<Migrator, sqlx::Error> {
    Ok(Migrator::new(Embedded(files)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to a migrations directory must be listed here too (and nothing else).
    #[test]
    fn the_lists_are_the_directories() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read_to_string(&p).unwrap())
                })
                .collect();
            on_disk.sort();
            let listed: Vec<(String, String)> = list
                .iter()
                .map(|(f, s)| (f.to_string(), s.to_string()))
                .collect();
            assert_eq!(listed, on_disk, "migrations/{dir}");
        }
    }

    /// Versions, descriptions and checksums as sqlx reads the same directory at run time (the
    /// reader `migrate!` uses), so a database either one migrated is valid for the other.
    #[tokio::test]
    async fn read_as_sqlx_reads_the_directory() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let theirs = Migrator::new(path.as_path()).await.unwrap();
            let ours = migrator(list).await.unwrap();
            let key = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            };
            let theirs: Vec<_> = theirs.iter().map(key).collect();
            let ours: Vec<_> = ours.iter().map(key).collect();
            assert_eq!(ours, theirs, "migrations/{dir}");
            assert!(!ours.is_empty());
        }
    }
}
