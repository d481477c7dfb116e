//! Who this process is, for the rows it leases: read from its environment once, at the edge,
//! and passed down (the acquisition layer never reads the environment).

/// `host-pid-random`: unique per process, readable in the lease columns.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let host: String = host.chars().take(64).collect();
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_owner_id_names_this_process_and_differs() {
        let (a, b) = (super::owner_id(), super::owner_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
