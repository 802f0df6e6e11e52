//! What a node says about itself: the agent's facts plus the DMI, disks and
//! mountpoints a site's custom facts typically add (about 1.5 KB, like a
//! real node's), for the three operating systems of the seeded fleet.

use drover_catalog::Facts;
use serde_json::json;

use crate::rng::Rng;

/// The agent version the seeded nodes run.
pub(crate) const AGENT_VERSION: &str = "0.1.0";

/// The operating systems of the fleet, and how many nodes of ten run each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Debian,
    Ubuntu,
    Rocky,
}

impl Os {
    pub(crate) const ALL: [Os; 3] = [Os::Debian, Os::Ubuntu, Os::Rocky];
    /// 60% Debian, 30% Ubuntu, 10% Rocky.
    pub(crate) const WEIGHTS: [u32; 3] = [6, 3, 1];

    /// `os.id`.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Os::Debian => "debian",
            Os::Ubuntu => "ubuntu",
            Os::Rocky => "rocky",
        }
    }

    /// (version_id, codename, name, pretty_name, id_like)
    fn release(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ) {
        match self {
            Os::Debian => (
                "12",
                "bookworm",
                "Debian GNU/Linux",
                "Debian GNU/Linux 12 (bookworm)",
                None,
            ),
            Os::Ubuntu => (
                "24.04",
                "noble",
                "Ubuntu",
                "Ubuntu 24.04.1 LTS",
                Some("debian"),
            ),
            Os::Rocky => (
                "9.4",
                "blue onyx",
                "Rocky Linux",
                "Rocky Linux 9.4 (Blue Onyx)",
                Some("rhel centos fedora"),
            ),
        }
    }

    /// (kernel release, kernel version)
    fn kernel(self) -> (&'static str, &'static str) {
        match self {
            Os::Debian => (
                "6.1.0-25-amd64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)",
            ),
            Os::Ubuntu => (
                "6.8.0-45-generic",
                "#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024",
            ),
            Os::Rocky => (
                "5.14.0-427.13.1.el9_4.x86_64",
                "#1 SMP PREEMPT_DYNAMIC Wed May 1 19:11:28 UTC 2024",
            ),
        }
    }
}

/// The facts of node number `i` (from 0), named `name`.
pub(crate) fn facts_of(i: usize, name: &str, os: Os, rng: &mut Rng) -> Facts {
    let (version_id, codename, os_name, pretty, id_like) = os.release();
    let (release, kversion) = os.kernel();
    let ip = format!("10.{}.{}.{}", 20 + i / 65536, (i / 256) % 256, i % 256);
    let mac = rng.hex(32);
    let product_uuid = uuid::Uuid::from_u128(rng.u128()).to_string();
    let datacenter = ["fra1", "ams3", "lon2"][i % 3];
    let facts = json!({
        "agent_version": AGENT_VERSION,
        "architecture": "x86_64",
        "datacenter": datacenter,
        "dmi": {
            "bios": {"vendor": "SeaBIOS", "version": "1.16.2-debian-1.16.2-1"},
            "manufacturer": "QEMU",
            "product": {"name": "Standard PC (Q35 + ICH9, 2009)", "uuid": product_uuid},
        },
        "disks": {
            "vda": {"model": "Virtio Block Device", "size_bytes": 85_899_345_920_u64},
            "vdb": {"model": "Virtio Block Device", "size_bytes": 214_748_364_800_u64},
        },
        "fqdn": format!("{name}.prod.example.net"),
        "hostname": name,
        "kernel": {"name": "Linux", "release": release, "version": kversion},
        "memory": {"total_bytes": 8_u64 * (1 << 30) * (1 + i as u64 % 4)},
        "mountpoints": {
            "/": {"device": "/dev/vda1", "filesystem": "ext4", "size_bytes": 84_825_604_096_u64},
            "/boot/efi": {"device": "/dev/vda15", "filesystem": "vfat", "size_bytes": 129_718_272},
            "/srv": {"device": "/dev/vdb1", "filesystem": "xfs", "size_bytes": 214_643_507_200_u64},
        },
        "networking": {
            "interfaces": {
                "docker0": {"ipv4": ["172.17.0.1"], "ipv6": []},
                "eth0": {"ipv4": [ip], "ipv6": [format!("fe80::5054:ff:fe{}:{}", &mac[..2], &mac[2..])]},
                "eth1": {"ipv4": [format!("192.168.{}.{}", i % 256, i / 256 % 256)], "ipv6": []},
                "lo": {"ipv4": ["127.0.0.1"], "ipv6": ["::1"]},
            },
            "ip": ip,
        },
        "os": {
            "codename": codename,
            "family": "linux",
            "id": os.id(),
            "id_like": id_like,
            "name": os_name,
            "pretty_name": pretty,
            "version_id": version_id,
        },
        "processors": {"count": 2 * (1 + i % 4)},
        "timezone": "Etc/UTC",
    });
    match facts {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}
