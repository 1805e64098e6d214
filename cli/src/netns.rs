//! Network namespaces for the fault tests and the multi-node demo (root
//! only): one namespace per node, each joined by a veth pair to a bridge in
//! a hub namespace, so every node reaches every other and any one node can
//! be cut off (its end of the link down), made lossy (iptables) or capped
//! (tc). Each node's daemon runs in its namespace (`ip netns exec`). The
//! namespaces are removed on drop.

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

/// Nodes in namespaces around a bridge: node `i` in `ns[i]`, holding
/// `ip[i]` (`10.77.n.(i+1)/24`) on `dev[i]`. Removed on drop.
pub struct Net {
    /// The nodes' namespaces.
    pub ns: Vec<String>,
    /// Each node's end of its link to the bridge.
    pub dev: Vec<String>,
    /// Each node's address.
    pub ip: Vec<String>,
    /// The hub namespace, holding the bridge.
    hub: String,
}

impl Net {
    /// Two nodes.
    pub fn new() -> Result<Net, String> {
        Net::star(2)
    }

    /// `nodes` nodes (2 to 9), names and a /24 from this process's id and
    /// how many nets it made before.
    pub fn star(nodes: usize) -> Result<Net, String> {
        if !(2..=9).contains(&nodes) {
            return Err(format!("{nodes} nodes: 2 to 9"));
        }
        // Unique per process and per net within it (tests run several).
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = std::process::id() % 10_000 * 10 + made % 10;
        let n = (std::process::id() + made) % 250 + 1;
        let letters = "ABCDEFGHI".as_bytes();
        let mut net = Net {
            ns: Vec::new(),
            dev: Vec::new(),
            ip: Vec::new(),
            hub: format!("ckptH{tag}"),
        };
        run(&["ip", "netns", "add", &net.hub])?;
        let hub = net.hub.clone();
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for (i, &letter) in letters.iter().enumerate().take(nodes) {
            let letter = letter as char;
            let ns = format!("ckpt{letter}{tag}");
            let dev = format!("ck{letter}{}", tag % 100_000);
            let port = format!("hb{letter}{}", tag % 100_000);
            let ip = format!("10.77.{n}.{}", i + 1);
            // Recorded first: a failure half way removes what was made.
            run(&["ip", "netns", "add", &ns])?;
            net.ns.push(ns.clone());
            net.dev.push(dev.clone());
            net.ip.push(ip.clone());
            run(&[
                "ip", "link", "add", &dev, "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "master", "br0"])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &dev,
            ])?;
            run(&["ip", "-n", &ns, "link", "set", &dev, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Runs `args` in node `i`'s namespace.
    pub fn in_ns(&self, i: usize, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.ns[i]];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Sets node 0's link up or down.
    pub fn link(&self, up: bool) -> Result<(), String> {
        self.node_link(0, up)
    }

    /// Sets node `i`'s link up or down (down: it is cut off from all).
    pub fn node_link(&self, i: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        run(&["ip", "-n", &self.ns[i], "link", "set", &self.dev[i], state])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.ns.iter().chain([&self.hub]) {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
