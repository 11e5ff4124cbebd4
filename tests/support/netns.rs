//! Network namespaces for the tests' "other machines": each a namespace of its own joined to
//! this one by a veth pair on 10.231.0.0/16, whose link a test can cut (root only).

use std::process::Command;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A namespace and its link: `host_ip` is this side's address (the namespace's is `.2`).
pub struct Link {
    pub ns: String,
    pub host_ip: String,
    host_end: String,
}

impl Link {
    /// A namespace named after `tag` (and this process), its link up.
    pub fn new(tag: &str, subnet: u8) -> Link {
        let id = std::process::id() % 10_000;
        let ns = format!("rollout-{tag}-{id}");
        let (host_end, ns_end) = (format!("vh{tag}{id}"), format!("vn{tag}{id}"));
        let net = format!("10.231.{}", (id % 60) * 4 + u32::from(subnet));
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        ip(&["netns", "add", &ns]);
        // Made before the rest, so that a step that fails still deletes what was made.
        let link = Link { ns, host_ip, host_end };
        ip(&["link", "add", &link.host_end, "type", "veth", "peer", "name", &ns_end]);
        ip(&["link", "set", &ns_end, "netns", &link.ns]);
        ip(&["addr", "add", &format!("{}/24", link.host_ip), "dev", &link.host_end]);
        ip(&["link", "set", &link.host_end, "up"]);
        ip(&["netns", "exec", &link.ns, "ip", "addr", "add", &format!("{ns_ip}/24"), "dev", &ns_end]);
        ip(&["netns", "exec", &link.ns, "ip", "link", "set", &ns_end, "up"]);
        ip(&["netns", "exec", &link.ns, "ip", "link", "set", "lo", "up"]);
        link
    }

    /// `command` run in the namespace: `ip netns exec NS` before it.
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", &self.ns]).arg(command.get_program()).args(command.get_args());
        wrapped.env_clear().envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))));
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Cut the link, as a laptop that lost its network: no reset reaches the other side.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_end, "down"]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_end]).output();
    }
}
