//! What the OS says about memory: how much this process may still use (the
//! machine's available memory, or a container's cgroup limit where that is
//! tighter) and how much it holds. Commands check sizes against
//! [`available_memory`] up front, so that a request too big for the machine
//! is an error naming the sizes rather than an out-of-memory kill later.

/// The variable that caps what this process assumes it may still use, in
/// bytes (to leave room for other programs on the machine, and for tests).
pub const MEMORY_LIMIT_ENV: &str = "BITNET_MEMORY_LIMIT";

/// Bytes this process may still use: the machine's `MemAvailable`, or less
/// where a memory cgroup (a container's limit) or `BITNET_MEMORY_LIMIT`
/// leaves less room. `None` where none of them says.
pub fn available_memory() -> Option<u64> {
    let cap = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let machine = (|| {
        let s = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        let machine = kb * 1024;
        Some(cgroup_headroom().map_or(machine, |h| h.min(machine)))
    })();
    match (machine, cap) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Room left under this process's memory cgroup limit: the limit less the
/// usage, counting the inactive page cache (which the kernel reclaims before
/// it kills) as free. cgroup v2 (`memory.max`) or v1
/// (`memory.limit_in_bytes`); `None` when there is no limit.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read =
        |path: String| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let inactive_file = |dir: &str, key: &str| -> u64 {
        std::fs::read_to_string(format!("{dir}/memory.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let mut room: Option<u64> = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        // The directory as seen from here, then the mount root (inside a
        // container's cgroup namespace the two coincide).
        let (root, limit_file, usage_file, stat_key) = if controllers.is_empty() {
            (
                "/sys/fs/cgroup",
                "memory.max",
                "memory.current",
                "inactive_file ",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file ",
            )
        } else {
            continue;
        };
        for dir in [format!("{root}{path}"), root.to_string()] {
            let (Some(limit), Some(usage)) = (
                read(format!("{dir}/{limit_file}")),
                read(format!("{dir}/{usage_file}")),
            ) else {
                continue;
            };
            // "max" (v2) does not parse; v1 says "no limit" with a huge value.
            if limit >= 1 << 60 {
                break;
            }
            let free = limit.saturating_sub(usage) + inactive_file(&dir, stat_key);
            room = Some(room.map_or(free, |r| r.min(free)));
            break;
        }
    }
    room
}

/// Peak resident memory of this process (`VmHWM`), where the OS reports it.
pub fn peak_rss() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident memory of this process (`VmRSS`).
pub fn current_rss() -> Option<u64> {
    proc_status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Refuses `count` KV caches of `n_ctx` positions that could never fit in
/// memory (caches are allocated lazily, so without this check a large
/// `-c` would run until the OS kills the process mid-generation).
pub(crate) fn check_kv_caches(
    model: &bitnet_model::Model,
    n_ctx: usize,
    kv_type: bitnet_model::KvType,
    count: usize,
) -> crate::Result<()> {
    let per_position = bitnet_model::KvCache::bytes_for(model.hparams(), 1, kv_type);
    let bytes = per_position
        .checked_mul(n_ctx)
        .and_then(|b| b.checked_mul(count));
    let available = available_memory();
    let fits = match (bytes, available) {
        (None, _) => false,
        (Some(b), Some(a)) => b as u64 <= a,
        (Some(_), None) => true,
    };
    if fits {
        return Ok(());
    }
    let gib = |b: f64| format!("{:.1} GiB", b / f64::from(1u32 << 30));
    let need = gib(per_position as f64 * n_ctx as f64 * count as f64);
    let caches = if count == 1 {
        String::new()
    } else {
        format!(" × {count} sequences")
    };
    Err(crate::Error::InvalidArgument {
        name: "context size",
        reason: format!(
            "{n_ctx} positions{caches} need {need} of {} KV cache, more than the {} of memory available; use a smaller -c/--ctx-size{}{}",
            kv_type.name(),
            available.map_or_else(|| "?".into(), |a| gib(a as f64)),
            if count > 1 {
                ", fewer --parallel slots"
            } else {
                ""
            },
            if kv_type == bitnet_model::KvType::Q8 {
                ""
            } else {
                " or --kv-type q8"
            },
        ),
    })
}
