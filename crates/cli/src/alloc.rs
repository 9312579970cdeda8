//! Process start, before `main`: the global allocator (mimalloc) and the options it must have
//! before its first allocation.
//!
//! Why mimalloc: loading 10,000 routes is allocation-bound (glibc's `malloc`/`free` and the page
//! faults of its fresh heap were ~38 % of `gatehouse check`); mimalloc takes ~40 % off a load and
//! ~270 instructions off a proxied request (bench/README.md, "Routing at scale").
//!
//! Why the options: by default mimalloc commits its arenas eagerly on Linux and then never
//! decommits freed pages, and purges lazily a second after the last free. A gateway that parsed a
//! large config would sit at the parse peak (idle RSS 116 MB for 10,000 routes, against 51 MB with
//! glibc). With on-demand commit and a 100 ms purge delay it sits at glibc's level, and a reload
//! releases what it freed ([`release_freed`], called by the gateway after each load). An operator's
//! `MIMALLOC_*` environment variables still win: only the defaults are set here.

use libmimalloc_sys::{mi_collect, mi_option_set_default, mi_option_t};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (the Rust bindings name only the
/// stable options).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
/// `mi_option_purge_delay` (milliseconds).
const PURGE_DELAY: mi_option_t = 15;

/// Sets the option defaults. mimalloc reads its options once, at its first allocation, and its
/// first arena (1 GiB of address space, enough for every allocation of a gateway) is reserved
/// then too. Setting them in `main` is too late: the Rust runtime has allocated by then.
extern "C" fn set_defaults() {
    // SAFETY: plain stores into mimalloc's option table; nothing has allocated yet (this runs
    // before the Rust runtime starts), so nothing reads the table concurrently.
    unsafe {
        mi_option_set_default(ARENA_EAGER_COMMIT, 0);
        mi_option_set_default(PURGE_DELAY, 100);
    }
}

// ELF constructors in `.init_array.NNNNN` run before the unnumbered ones (mimalloc's own
// start-up) and before `main`; std's argument capture sits at 00099 and does not allocate.
// Elsewhere mimalloc keeps its own defaults.
#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array.00101")]
static SET_DEFAULTS: extern "C" fn() = set_defaults;

/// Hands the memory this thread freed back to the system: its free pages, and arena memory whose
/// purge is due (registered with the gateway, which calls it after each config load).
pub(crate) fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers and only touches the calling thread's heap and the
    // arenas' purge lists, which are synchronised inside mimalloc.
    unsafe { mi_collect(true) }
}

/// Runs forever on a worker's runtime: once a second, that thread's empty pages go back to the
/// arenas and purges that are due happen. mimalloc purges only from inside its own calls, so a
/// worker that went quiet after a burst (1,000 clients that sent 60 KB heads and left) would keep
/// the burst's memory until its next allocation; glibc returns part of it at once. A normal
/// collect of a thread with nothing to give back is a walk over its page queues, microseconds.
pub(crate) async fn collect_every_second() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: as in `release_freed`; `false` leaves abandoned pages of other threads alone.
        unsafe { mi_collect(false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The constructor ran before mimalloc's first allocation: a default set after it would be
    /// ignored, and the idle gateway would keep the parse peak (a regression only RSS would show).
    #[test]
    fn the_defaults_were_set_before_the_first_allocation() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return; // an operator's setting wins, by design
        }
        let _warm = vec![0u8; 1 << 20];
        // SAFETY: reads of mimalloc's option table.
        let (commit, delay) = unsafe {
            (
                mi_option_get(ARENA_EAGER_COMMIT),
                mi_option_get(PURGE_DELAY),
            )
        };
        assert_eq!((commit, delay), (0, 100));
    }
}
