//! What an inotify event means for the agent: a pure decision.

use std::path::Path;

use crate::cli::ListenEvent;
use crate::filter::Filter;

/// What happened to a name in a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// Created (a new file, hard link or directory).
    Created,
    /// Renamed into the directory.
    MovedTo,
    /// Closed after writing.
    ClosedWrite,
}

impl Happened {
    fn as_listen_event(self) -> ListenEvent {
        match self {
            Happened::Created => ListenEvent::IN_CREATE,
            Happened::MovedTo => ListenEvent::IN_MOVED_TO,
            Happened::ClosedWrite => ListenEvent::IN_CLOSE_WRITE,
        }
    }
}

/// What to do about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Queue the file for upload.
    Ship,
    /// Watch the new directory (and scan it: files can land before the watch).
    WatchDir,
    /// Nothing.
    Ignore,
}

/// Decides what an event means, given the agent's rules.
pub fn classify(
    what: Happened,
    is_dir: bool,
    path: &Path,
    listen: &[ListenEvent],
    filter: &Filter,
    auto_add: bool,
) -> Action {
    if is_dir {
        return if auto_add && matches!(what, Happened::Created | Happened::MovedTo) {
            Action::WatchDir
        } else {
            Action::Ignore
        };
    }
    // A file announced by IN_CREATE may still be written: its closing write ships it again.
    let listened = listen.contains(&what.as_listen_event())
        || (what == Happened::ClosedWrite && listen.contains(&ListenEvent::IN_CREATE));
    if !listened {
        return Action::Ignore;
    }
    if !filter.accepts(&path.to_string_lossy()) {
        return Action::Ignore;
    }
    Action::Ship
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let f = Filter::Default;
        let both = [ListenEvent::IN_MOVED_TO, ListenEvent::IN_CLOSE_WRITE];
        let p = Path::new("/d/nb-1-big-Data.db");
        assert_eq!(
            classify(Happened::MovedTo, false, p, &both, &f, false),
            Action::Ship
        );
        assert_eq!(
            classify(Happened::ClosedWrite, false, p, &both, &f, false),
            Action::Ship
        );
        assert_eq!(
            classify(Happened::Created, false, p, &both, &f, false),
            Action::Ignore
        );
        assert_eq!(
            classify(
                Happened::Created,
                false,
                p,
                &[ListenEvent::IN_CREATE],
                &f,
                false
            ),
            Action::Ship
        );
        // Issue 15.3: a file announced by IN_CREATE is shipped again when its write ends; with
        // IN_MOVED_TO alone a closing write stays ignored.
        assert_eq!(
            classify(
                Happened::ClosedWrite,
                false,
                p,
                &[ListenEvent::IN_CREATE],
                &f,
                false
            ),
            Action::Ship
        );
        assert_eq!(
            classify(
                Happened::ClosedWrite,
                false,
                p,
                &[ListenEvent::IN_MOVED_TO],
                &f,
                false
            ),
            Action::Ignore
        );
        let tmp = Path::new("/d/ks-t-tmp-ka-1-Data.db");
        assert_eq!(
            classify(Happened::MovedTo, false, tmp, &both, &f, false),
            Action::Ignore
        );
        assert_eq!(
            classify(
                Happened::Created,
                true,
                Path::new("/d/new"),
                &both,
                &f,
                true
            ),
            Action::WatchDir
        );
        assert_eq!(
            classify(
                Happened::Created,
                true,
                Path::new("/d/new"),
                &both,
                &f,
                false
            ),
            Action::Ignore
        );
    }
}
