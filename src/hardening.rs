//! Process hardening for anything that holds secrets: no core dumps, not
//! dumpable or ptrace-able by other processes of the same user, optionally
//! locked in RAM so secrets never reach swap.

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0) with core dumps off
/// (`RLIMIT_CORE` 0); with `lock_memory`, locks all current and future pages.
pub fn harden_process(lock_memory: bool) -> Result<(), String> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| format!("cannot disable core dumps (RLIMIT_CORE): {e}"))?;
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this process.
    let result = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if result != 0 {
        return Err(format!(
            "cannot make the process non-dumpable: {}",
            std::io::Error::last_os_error()
        ));
    }
    if lock_memory {
        nix::sys::mman::mlockall(
            nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::MCL_FUTURE,
        )
        .map_err(|e| {
            format!(
                "--mlock: cannot lock memory: {e} (needs CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)"
            )
        })?;
    }
    Ok(())
}

/// Whether the process is currently dumpable (for tests and status).
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}
