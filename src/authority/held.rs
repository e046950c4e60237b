//! Session ends the database could not take when they happened (it was
//! unreachable), kept in a file under `DATA_DIR` until stored, so a process
//! that stops during an outage loses none: the next one to start on that
//! `DATA_DIR` takes them over and stores them.
//!
//! Each process writes a file of its own (`held-session-ends/<uuid>.json`,
//! rewritten whole and atomically on every change, removed once empty), so
//! replicas sharing a `DATA_DIR` never overwrite each other's. At start a
//! process adopts every file there, a running replica's too: storing an
//! end twice changes nothing (only sessions not yet ended are ended).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::EndSessions;

const DIR: &str = "held-session-ends";

pub struct HeldEnds {
    dir: PathBuf,
    own: PathBuf,
}

impl HeldEnds {
    /// This process's file in `data_dir`, and the ends every file there
    /// holds.
    pub fn open(data_dir: &Path) -> io::Result<(Self, Vec<EndSessions>)> {
        let dir = data_dir.join(DIR);
        let mut ends = Vec::new();
        let mut adopted = Vec::new();
        if dir.is_dir() {
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match serde_json::from_slice::<Vec<EndSessions>>(&fs::read(&path)?) {
                    Ok(found) => ends.extend(found),
                    Err(e) => {
                        // Left in place for an operator to look at.
                        tracing::error!(path = %path.display(), error = %e, "unreadable held session ends");
                        continue;
                    }
                }
                adopted.push(path);
            }
        }
        let own = dir.join(format!("{}.json", uuid::Uuid::new_v4().simple()));
        let held = Self { dir, own };
        if !ends.is_empty() {
            tracing::warn!(
                ends = ends.len(),
                "session ends held by a process that stopped during a database outage; storing them"
            );
        }
        // The adopted ends are in this process's file before theirs go.
        held.write(&ends)?;
        for path in adopted {
            let _ = fs::remove_file(path);
        }
        Ok((held, ends))
    }

    /// Makes this process's file hold exactly `ends` (none: no file).
    pub fn write(&self, ends: &[EndSessions]) -> io::Result<()> {
        if ends.is_empty() {
            match fs::remove_file(&self.own) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            fs::create_dir_all(&self.dir)?;
            let partial = self.own.with_extension("partial");
            let mut file = fs::File::create(&partial)?;
            file.write_all(&serde_json::to_vec(ends).map_err(io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&partial, &self.own)?;
        }
        Ok(())
    }
}
