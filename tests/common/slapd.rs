//! OpenLDAP's `slapd` (Debian `slapd`) on a loopback port with a tree made
//! for the test: people under `ou=people`, groups (`groupOfNames`) under
//! `ou=groups`, the memberof overlay so entries carry `memberOf`. None
//! when slapd is not installed (and BERTH_REQUIRE_CLIENTS is not set).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin-secret";

pub struct Slapd {
    pub port: u16,
    /// The ldaps:// port, when started with TLS.
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    conf: PathBuf,
}

/// A person: uid, password, groups, and whether the account is disabled
/// (`employeeType: disabled`, which the test's filter excludes).
pub struct Person<'a> {
    pub uid: &'a str,
    pub password: &'a str,
    pub groups: &'a [&'a str],
    pub disabled: bool,
}

impl Slapd {
    pub fn start(people: &[Person]) -> Option<Slapd> {
        Slapd::start_with(people, None)
    }

    /// With TLS: `certs` holds `cert.pem` and `key.pem` (`make_cert`);
    /// StartTLS on the ldap:// port, and an ldaps:// port.
    pub fn start_with(people: &[Person], certs: Option<&std::path::Path>) -> Option<Slapd> {
        if Command::new("sh")
            .args(["-c", "command -v slapd && command -v ldapadd"])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            assert!(
                std::env::var("BERTH_REQUIRE_CLIENTS").is_err(),
                "slapd and ldap-utils are required (BERTH_REQUIRE_CLIENTS is set)"
            );
            eprintln!("slapd not installed: test skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let conf = dir.path().join("slapd.conf");
        let schema = "/etc/ldap/schema";
        std::fs::write(
            &conf,
            format!(
                "include {schema}/core.schema\ninclude {schema}/cosine.schema\n\
                 include {schema}/inetorgperson.schema\ninclude {schema}/nis.schema\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
                 pidfile {dir}/slapd.pid\n\
                 database mdb\nsuffix \"{BASE}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PW}\n\
                 directory {dir}/db\nmaxsize 10485760\noverlay memberof\n\
                 access to attrs=userPassword by self read by anonymous auth by * none\n\
                 access to * by * read\n{tls}",
                dir = dir.path().display(),
                tls = certs
                    .map(|c| format!(
                        "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                        c.join("cert.pem").display(),
                        c.join("key.pem").display()
                    ))
                    .unwrap_or_default()
            ),
        )
        .unwrap();
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n"
        );
        for p in people {
            ldif.push_str(&format!(
                "dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {pw}\n",
                uid = p.uid,
                pw = p.password
            ));
            if p.disabled {
                ldif.push_str("employeeType: disabled\n");
            }
            ldif.push('\n');
        }
        let mut groups: Vec<&str> = people
            .iter()
            .flat_map(|p| p.groups.iter().copied())
            .collect();
        groups.sort();
        groups.dedup();
        for g in groups {
            ldif.push_str(&format!(
                "dn: cn={g},ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: {g}\n"
            ));
            for p in people.iter().filter(|p| p.groups.contains(&g)) {
                ldif.push_str(&format!("member: uid={},ou=people,{BASE}\n", p.uid));
            }
            ldif.push('\n');
        }
        std::fs::write(dir.path().join("tree.ldif"), ldif).unwrap();
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let s = Slapd {
            port: free(),
            tls_port: certs.map(|_| free()),
            dir,
            conf,
        };
        s.spawn();
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &s.url(), "-D", ADMIN_DN, "-w", ADMIN_PW, "-f"])
            .arg(s.dir.path().join("tree.ldif"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(s)
    }

    fn spawn(&self) {
        // slapd forks into the background; its pid file says where it went
        let status = Command::new("slapd")
            .arg("-f")
            .arg(&self.conf)
            .args(["-h", &self.listen()])
            .status()
            .expect("slapd");
        assert!(status.success(), "slapd did not start");
        super::wait_for_port(self.port, "slapd");
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// The ldaps:// URL, when started with TLS.
    pub fn tls_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}/",
            self.tls_port.expect("started with TLS")
        )
    }

    fn listen(&self) -> String {
        match self.tls_port {
            Some(_) => format!("{} {}", self.url(), self.tls_url()),
            None => self.url(),
        }
    }

    /// Stop it (the directory goes down); `start_again` brings it back.
    pub fn stop(&self) {
        let pidfile = self.dir.path().join("slapd.pid");
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while pidfile.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn start_again(&self) {
        self.spawn();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
