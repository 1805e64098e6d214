//! Two network namespaces joined by a veth pair (root only), for the fault
//! tests and the two-node demo: each node's daemon runs in its own
//! namespace (`ip netns exec`), and the link between them can be cut,
//! lossy (iptables) or capped (tc). The namespaces are removed on drop.

use std::process::{Command, Stdio};

/// Runs a command (`args[0]` and its arguments); its error output on
/// failure.
pub fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True if `tool` runs here.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Two namespaces, `ns[0]` holding `10.77.n.1` on its end of the veth pair,
/// `ns[1]` `10.77.n.2`. Removed on drop.
pub struct Net {
    /// The namespaces' names.
    pub ns: [String; 2],
    /// Each namespace's end of the veth pair.
    pub dev: [String; 2],
    /// Each end's address.
    pub ip: [String; 2],
}

impl Net {
    /// Makes the two namespaces and the link (names and a /24 from this
    /// process's id).
    pub fn new() -> Result<Net, String> {
        let n = std::process::id() % 250 + 1;
        let tag = std::process::id();
        let net = Net {
            ns: [format!("ckptA{tag}"), format!("ckptB{tag}")],
            dev: [
                format!("ckA{}", tag % 100_000),
                format!("ckB{}", tag % 100_000),
            ],
            ip: [format!("10.77.{n}.1"), format!("10.77.{n}.2")],
        };
        for ns in &net.ns {
            run(&["ip", "netns", "add", ns])?;
        }
        run(&[
            "ip",
            "link",
            "add",
            &net.dev[0],
            "netns",
            &net.ns[0],
            "type",
            "veth",
            "peer",
            "name",
            &net.dev[1],
            "netns",
            &net.ns[1],
        ])?;
        for i in 0..2 {
            let ns = &net.ns[i];
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", net.ip[i]),
                "dev",
                &net.dev[i],
            ])?;
            run(&["ip", "-n", ns, "link", "set", &net.dev[i], "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Runs `args` in namespace `i`.
    pub fn in_ns(&self, i: usize, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.ns[i]];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Sets namespace 0's end of the link up or down.
    pub fn link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        run(&["ip", "-n", &self.ns[0], "link", "set", &self.dev[0], state])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
