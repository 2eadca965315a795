//! The pipes of the splice relay, sized to the kernel's per-user pipe budget (pipe(7)).
//!
//! An unprivileged user may hold `/proc/sys/fs/pipe-user-pages-soft` pages of pipe
//! buffers in total (16384 = 64 MiB by default); past it, `F_SETPIPE_SZ` fails with
//! EPERM and every new pipe gets 2 pages (8 KiB) instead of 16, and past
//! `pipe-user-pages-hard` (0 = none) `pipe(2)` fails. Growing every bulk transfer's pipe
//! to `data.buffer_size` (1 MiB) spends the budget after about 64 transfers, and then
//! every later transfer crawls through an 8 KiB pipe: a cliff.
//!
//! [`Budget`] counts the pages of every pipe this process holds and sizes each one to
//! fit: a pipe grows to what it wants while that leaves a reserve for new pipes, and
//! otherwise to the largest power of two within its fair share of the budget (never
//! below the 16-page default). When the budget gets tight, pipes above their share
//! shrink back (when empty), so that late transfers are not stuck with the default.
//! A process with CAP_SYS_RESOURCE or CAP_SYS_ADMIN (root, normally) is not limited.
//!
//! The kernel's count is per user, across processes: pipes that other processes of the
//! same user hold are invisible here. A pipe that comes out below the default (the
//! budget is spent elsewhere) is reported as [`Starved`] and the caller copies instead.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::pipe2;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The default pipe: 16 pages (PIPE_DEF_BUFFERS).
const DEFAULT_PAGES: usize = 16;
/// Capabilities that lift the per-user pipe limits (capability(7) numbers).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;

/// Pipe pages this process may hold, and how many it holds.
#[derive(Debug)]
pub(super) struct Budget {
    /// Pages all pipes may hold together; `None`: not limited.
    limit: Option<usize>,
    /// Pages kept free for new default pipes: growth never eats into it.
    reserve: usize,
    page: usize,
    held: AtomicUsize,
    pipes: AtomicUsize,
}

/// The process-wide budget, read from /proc on first use.
pub(super) fn budget() -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let soft = read_sysctl("/proc/sys/fs/pipe-user-pages-soft");
        let hard = read_sysctl("/proc/sys/fs/pipe-user-pages-hard");
        let limit = if privileged() {
            None
        } else {
            effective_limit(soft, hard)
        };
        tracing::debug!(?limit, page, "pipe budget (pages)");
        Budget::new(limit, page)
    })
}

/// The smaller of the non-zero limits (0 means none), or `None`.
fn effective_limit(soft: Option<usize>, hard: Option<usize>) -> Option<usize> {
    [soft, hard].into_iter().flatten().filter(|&l| l > 0).min()
}

fn read_sysctl(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the kernel exempts this process from the per-user limits: it checks
/// CAP_SYS_RESOURCE or CAP_SYS_ADMIN, not the uid (a root in a container without them
/// is limited). Without /proc/self/status, euid 0 is taken as privileged.
fn privileged() -> bool {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    match caps {
        Some(c) => has_cap(c, CAP_SYS_RESOURCE) || has_cap(c, CAP_SYS_ADMIN),
        None => nix::unistd::geteuid().is_root(),
    }
}

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// The largest power of two ≤ `n` (0 for 0).
fn pow2_floor(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

impl Budget {
    fn new(limit: Option<usize>, page: usize) -> Budget {
        Budget {
            limit,
            // An eighth of the budget: room for 128 new default pipes in 16384 pages
            // before the grown ones have shrunk to their new share.
            reserve: limit.map_or(0, |l| (l / 8).max(DEFAULT_PAGES)),
            page,
            held: AtomicUsize::new(0),
            pipes: AtomicUsize::new(0),
        }
    }

    /// The pages a pipe that wants `want` should have now: `want` when not limited,
    /// else at most its fair share of the budget less the reserve, as a power of two.
    fn target(&self, want: usize) -> usize {
        let Some(limit) = self.limit else {
            return want;
        };
        let pipes = self.pipes.load(Ordering::Relaxed).max(1);
        let share = pow2_floor(limit.saturating_sub(self.reserve) / pipes);
        want.min(share).max(DEFAULT_PAGES)
    }

    /// Takes up to `more` pages for a pipe that holds `has`, keeping the reserve:
    /// the largest power-of-two total that fits. Returns the new total (or `has`).
    fn take(&self, has: usize, want: usize) -> usize {
        let Some(limit) = self.limit else {
            self.held.fetch_add(want - has, Ordering::Relaxed);
            return want;
        };
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let free = limit.saturating_sub(self.reserve).saturating_sub(held);
            let total = want.min(pow2_floor(has + free));
            if total <= has {
                return has;
            }
            match self.held.compare_exchange_weak(
                held,
                held + (total - has),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return total,
                Err(now) => held = now,
            }
        }
    }

    fn give(&self, pages: usize) {
        self.held.fetch_sub(pages, Ordering::Relaxed);
    }

    /// Less free than the reserve: new pipes are eating into it.
    fn tight(&self) -> bool {
        self.limit
            .is_some_and(|l| l.saturating_sub(self.held.load(Ordering::Relaxed)) < self.reserve)
    }
}

/// The budget left too little for a default pipe (or `pipe(2)` failed): copy instead.
#[derive(Debug)]
pub(super) struct Starved(pub &'static str);

/// A pipe whose pages are counted in the budget until it is dropped.
#[derive(Debug)]
pub(super) struct Pipe {
    pub rd: OwnedFd,
    pub wr: OwnedFd,
    pages: usize,
    budget: &'static Budget,
    /// The kernel refused to grow it (another process of this user holds the budget,
    /// or pipe-max-size): it keeps its size.
    stuck: bool,
}

impl Pipe {
    pub fn new(budget: &'static Budget) -> Result<Pipe, Starved> {
        let (rd, wr) =
            pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|_| Starved("pipe(2) failed"))?;
        let bytes = fcntl(&wr, FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(DEFAULT_PAGES * budget.page);
        let pages = bytes / budget.page;
        budget.held.fetch_add(pages, Ordering::Relaxed);
        budget.pipes.fetch_add(1, Ordering::Relaxed);
        let pipe = Pipe {
            rd,
            wr,
            pages,
            budget,
            stuck: false,
        };
        if pages < DEFAULT_PAGES {
            // Dropping it returns its pages.
            return Err(Starved(
                "the per-user pipe budget is spent (pipe-user-pages-soft)",
            ));
        }
        Ok(pipe)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.pages * self.budget.page
    }

    /// Brings the pipe toward its fair size for wanting `want_bytes`: grows it while
    /// the budget allows, shrinks it when the budget is tight and it is above its share.
    /// Call only while the pipe is empty (a shrink below its contents fails).
    pub fn fit(&mut self, want_bytes: usize) {
        let want = pow2_floor((want_bytes / self.budget.page).max(DEFAULT_PAGES));
        let target = self.budget.target(want);
        if target > self.pages && !self.stuck {
            let total = self.budget.take(self.pages, target);
            if total > self.pages {
                let granted = total - self.pages;
                match self.resize(total) {
                    Some(got) => {
                        // Counted as granted, then settled to what the kernel gave (it
                        // rounds to a power of two of pages, and caps at pipe-max-size).
                        self.pages = total;
                        self.account(got);
                        self.stuck = got < total;
                    }
                    None => {
                        self.budget.give(granted);
                        self.stuck = true;
                        tracing::debug!(pages = total, "the kernel refused to grow a pipe");
                    }
                }
            }
        } else if target < self.pages && self.budget.tight() {
            if let Some(got) = self.resize(target) {
                self.account(got);
            }
        }
    }

    /// `F_SETPIPE_SZ`; the pages the pipe has afterwards, or `None` if refused.
    fn resize(&self, pages: usize) -> Option<usize> {
        let bytes = i32::try_from(pages * self.budget.page).ok()?;
        let got = fcntl(&self.wr, FcntlArg::F_SETPIPE_SZ(bytes)).ok()?;
        usize::try_from(got).ok().map(|b| b / self.budget.page)
    }

    /// The pipe now has `pages`: settle the difference with the budget.
    fn account(&mut self, pages: usize) {
        if pages > self.pages {
            self.budget
                .held
                .fetch_add(pages - self.pages, Ordering::Relaxed);
        } else {
            self.budget.give(self.pages - pages);
        }
        self.pages = pages;
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.budget.give(self.pages);
        self.budget.pipes.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(limit: Option<usize>) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit, 4096)))
    }

    #[test]
    fn limits_zero_means_none_and_the_smaller_counts() {
        assert_eq!(effective_limit(Some(16384), Some(0)), Some(16384));
        assert_eq!(effective_limit(Some(0), Some(0)), None);
        assert_eq!(effective_limit(Some(16384), Some(8192)), Some(8192));
        assert_eq!(effective_limit(None, None), None);
    }

    #[test]
    fn capability_bits() {
        // A full root set (0x1ffffffffff) and an unprivileged empty one.
        assert!(has_cap(0x1ff_ffff_ffff, CAP_SYS_RESOURCE));
        assert!(!has_cap(0, CAP_SYS_RESOURCE));
        assert!(has_cap(1 << 21, CAP_SYS_ADMIN));
    }

    #[test]
    fn pow2() {
        assert_eq!(
            [0, 1, 2, 3, 16, 71, 256].map(pow2_floor),
            [0, 1, 2, 2, 16, 64, 256]
        );
    }

    #[test]
    fn unlimited_gives_what_is_wanted() {
        let b = leak(None);
        assert_eq!(b.target(256), 256);
        assert_eq!(b.take(16, 256), 256);
    }

    #[test]
    fn growth_keeps_the_reserve_and_shares_fall_with_the_pipe_count() {
        let b = leak(Some(16384));
        // 56 pipes at 256 pages fit beside the 2048-page reserve; the next cannot grow.
        b.pipes.store(57, Ordering::Relaxed);
        b.held.store(56 * 256 + 16, Ordering::Relaxed);
        assert_eq!(b.take(16, 256), 16);
        // With 200 pipes the share is (16384 - 2048) / 200 = 71 -> 64 pages.
        b.pipes.store(200, Ordering::Relaxed);
        assert_eq!(b.target(256), 64);
        // 1000 pipes: below the default, which is the floor.
        b.pipes.store(1000, Ordering::Relaxed);
        assert_eq!(b.target(256), DEFAULT_PAGES);
    }

    #[test]
    fn take_grants_the_largest_power_of_two_that_fits() {
        let b = leak(Some(16384));
        // 16384 - 2048 - 14000 = 336 free: 16 + 336 -> 256 total.
        b.held.store(14000, Ordering::Relaxed);
        assert_eq!(b.take(16, 256), 256);
        assert_eq!(b.held.load(Ordering::Relaxed), 14240);
    }

    #[test]
    fn pipes_return_their_pages_and_grow_and_shrink_with_the_budget() {
        // A real pipe under a budget of our own (the kernel's limit does not apply to
        // root, so only our accounting decides here).
        let b = leak(Some(4096));
        let mut p = Pipe::new(b).map_err(|s| s.0).unwrap();
        let base = p.pages;
        assert_eq!(b.held.load(Ordering::Relaxed), base);
        p.fit(1 << 20);
        assert!(p.pages >= 256 || p.stuck, "{p:?}");
        assert_eq!(b.held.load(Ordering::Relaxed), p.pages);
        // Many other pipes appear and the budget gets tight: this one shrinks to its share.
        if !p.stuck {
            b.pipes.fetch_add(99, Ordering::Relaxed);
            b.held.fetch_add(3400, Ordering::Relaxed);
            p.fit(1 << 20);
            // (4096 - 512) / 100 = 35 -> 32 pages.
            assert_eq!(p.pages, 32);
            b.pipes.fetch_sub(99, Ordering::Relaxed);
            b.held.fetch_sub(3400, Ordering::Relaxed);
        }
        drop(p);
        assert_eq!(b.held.load(Ordering::Relaxed), 0);
        assert_eq!(b.pipes.load(Ordering::Relaxed), 0);
    }
}
