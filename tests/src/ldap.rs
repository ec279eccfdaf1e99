//! A real OpenLDAP server per test: `slapd` from the system's packages, started on a free
//! local port with a throwaway `slapd.conf` and database in a temp dir, loaded with
//! [`directory_ldif`] by `slapadd` before it starts. One server per test keeps tests that
//! change the directory (revalidation removes users and group members) from affecting each
//! other.
//!
//! The directory: people under `ou=people`, a service account Scribe binds as (read access
//! to everything but passwords), and two groups whose membership the `memberof` overlay
//! mirrors into each person's `memberOf`, which the configured queries filter on:
//!
//! | uid     | scribe-users | scribe-admins | note                               |
//! |---------|--------------|---------------|------------------------------------|
//! | alice   | yes          |               |                                    |
//! | ada     | yes          | yes           | mail with an upper-case domain     |
//! | admin   |              | yes           | admin only through `admin_query`   |
//! | carol   |              |               | in the directory, but not allowed  |
//! | twin1/2 | yes          |               | the same mail address              |
//! | nomail  | yes          |               | no mail attribute                  |
//!
//! `slapd` is `$SCRIBE_TEST_SLAPD` or `/usr/sbin/slapd` (`scripts/test` installs Debian's
//! `slapd` when it is missing). Without it the tests fail, loudly; they never skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, Mod};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// Where the harness looks for `slapd` first.
pub const SLAPD_VAR: &str = "SCRIBE_TEST_SLAPD";
pub const BASE_DN: &str = "dc=example,dc=org";
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
pub const USERS_GROUP: &str = "cn=scribe-users,ou=groups,dc=example,dc=org";
pub const ADMINS_GROUP: &str = "cn=scribe-admins,ou=groups,dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=scribe,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-Secret-1";
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-Secret-1";
/// Every person's password is this, prefixed with their uid (`alice-Pass-1`).
pub const PASSWORD_SUFFIX: &str = "-Pass-1";
/// The provider name the harness configures.
pub const PROVIDER: &str = "OpenLDAP";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn password(uid: &str) -> String {
    format!("{uid}{PASSWORD_SUFFIX}")
}

pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE_DN}")
}

fn person(uid: &str, mail: Option<&str>, groups: &[&str]) -> String {
    let mut entry = format!(
        "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n",
        dn = user_dn(uid),
        password = password(uid),
    );
    if let Some(mail) = mail {
        entry.push_str(&format!("mail: {mail}\n"));
    }
    // slapadd bypasses overlays, so the memberOf values the overlay would keep are written
    // here; later group changes over LDAP go through the overlay.
    for group in groups {
        entry.push_str(&format!("memberOf: {group}\n"));
    }
    entry
}

fn group(dn: &str, cn: &str, members: &[&str]) -> String {
    // groupOfNames needs a member; the service account is a harmless one that no query
    // matches (it is no inetOrgPerson).
    let mut entry =
        format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\nmember: {SERVICE_DN}\n");
    for uid in members {
        entry.push_str(&format!("member: {}\n", user_dn(uid)));
    }
    entry
}

/// The test directory as LDIF.
pub fn directory_ldif() -> String {
    let entries = [
        format!("dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"),
        format!("dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"),
        "dn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n".to_owned(),
        "dn: ou=services,dc=example,dc=org\nobjectClass: organizationalUnit\nou: services\n"
            .to_owned(),
        format!(
            "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: scribe\nuserPassword: {SERVICE_PASSWORD}\n"
        ),
        person("alice", Some("alice@example.org"), &[USERS_GROUP]),
        person("ada", Some("Ada.Lovelace@EXAMPLE.org"), &[USERS_GROUP, ADMINS_GROUP]),
        person("admin", Some("admin@example.org"), &[ADMINS_GROUP]),
        person("carol", Some("carol@example.org"), &[]),
        person("twin1", Some("twins@example.org"), &[USERS_GROUP]),
        person("twin2", Some("twins@example.org"), &[USERS_GROUP]),
        person("nomail", None, &[USERS_GROUP]),
        group(
            USERS_GROUP,
            "scribe-users",
            &["alice", "ada", "twin1", "twin2", "nomail"],
        ),
        group(ADMINS_GROUP, "scribe-admins", &["ada", "admin"]),
    ];
    entries.join("\n")
}

/// The harness's `slapd`: `$SCRIBE_TEST_SLAPD`, else the usual system paths.
pub fn slapd_bin() -> PathBuf {
    if let Some(path) = std::env::var_os(SLAPD_VAR) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{SLAPD_VAR}={} is no file", path.display());
        return path;
    }
    [
        "/usr/sbin/slapd",
        "/usr/local/libexec/slapd",
        "/usr/libexec/slapd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
    .unwrap_or_else(|| {
        panic!(
            "\n\nThe LDAP tests need a real OpenLDAP server, but slapd was not found.\n\
                 Run the suite with `scripts/test` (it installs Debian's slapd), or install it \
                 (`apt-get install slapd`), or point {SLAPD_VAR} at a slapd binary.\n"
        )
    })
}

fn first_existing(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("slapd's {what} not found in any of {candidates:?}"))
}

/// A TLS certificate for 127.0.0.1, signed by a throwaway CA (openssl command line tool).
pub struct TestCertificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificates {
    pub fn create(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command line tool is required for the LDAP TLS tests");
            assert!(output.status.success(), "openssl {args:?}: {output:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-days",
            "2",
            "-subj",
            "/CN=Scribe test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&ca_args);
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&csr_args);
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Self {
            ca: path("ca.pem"),
            cert: path("server.pem"),
            key: path("server.key"),
        }
    }
}

/// A running `slapd` on its own database, killed when dropped.
pub struct Slapd {
    /// `ldap://127.0.0.1:<port>`
    pub url: String,
    /// `ldaps://127.0.0.1:<port>` when started with TLS.
    pub ldaps_url: Option<String>,
    /// The CA that signed the server's certificate, when started with TLS.
    pub ca_pem: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    dir: TempDir,
}

impl Slapd {
    /// Plain LDAP only.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Plain LDAP (with StartTLS) and LDAPS, with a certificate from a throwaway CA.
    pub async fn start_with_tls() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Self {
        let slapd = slapd_bin();
        let dir = tempfile::Builder::new()
            .prefix("scribe-slapd-")
            .tempdir()
            .expect("create a temp dir for slapd");
        let certificates = tls.then(|| TestCertificates::create(dir.path()));
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, slapd_conf(dir.path(), certificates.as_ref())).unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let ldif = dir.path().join("directory.ldif");
        std::fs::write(&ldif, directory_ldif()).unwrap();
        let output = Command::new(&slapd)
            .arg("-Ta")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {} -Ta (slapadd): {e}", slapd.display()));
        assert!(
            output.status.success(),
            "slapadd failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let mut slapd = Self {
            url: String::new(),
            ldaps_url: None,
            ca_pem: certificates.as_ref().map(|c| c.ca.clone()),
            child: None,
            log: dir.path().join("slapd.log"),
            dir,
        };
        // A port found free can be taken by someone else before slapd binds it: try again.
        for _ in 0..5 {
            let port = free_port();
            slapd.url = format!("ldap://127.0.0.1:{port}");
            slapd.ldaps_url = tls.then(|| format!("ldaps://127.0.0.1:{}", free_port()));
            let mut listen = format!("{}/", slapd.url);
            if let Some(ldaps) = &slapd.ldaps_url {
                listen.push_str(&format!(" {ldaps}/"));
            }
            if slapd.launch(&listen, port).await {
                return slapd;
            }
        }
        panic!(
            "slapd could not bind a free port in 5 tries:\n{}",
            slapd.log()
        );
    }

    /// Starts slapd on `listen` and waits until `port` accepts connections; false if it
    /// exited (the port was taken).
    async fn launch(&mut self, listen: &str, port: u16) -> bool {
        let conf = self.dir.path().join("slapd.conf");
        let log = std::fs::File::create(&self.log).unwrap();
        let mut command = Command::new(slapd_bin());
        // -d keeps slapd in the foreground; "stats" logs connections and operations.
        command
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(listen)
            .args(["-d", "stats"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", slapd_bin().display()));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                if log.contains("Address already in use") {
                    return false;
                }
                panic!("slapd exited with {status} at start-up:\n{log}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return true;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "slapd did not accept connections within {READY_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// slapd's own log (connections, binds, searches), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills slapd: the directory is down from now on.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// `security.ldap_providers.<name>` for this directory over plain LDAP: logins by uid or
    /// mail, users in `scribe-users`, admins in `scribe-admins`, the uid attribute being
    /// OpenLDAP's `entryUUID`.
    pub fn provider_config(&self) -> Value {
        provider_config(&self.url)
    }

    /// `ldap_providers` with this directory as [`PROVIDER`] (and `overrides` merged over it),
    /// ready to merge into a test's config.
    pub fn config(&self, overrides: Value) -> Value {
        let mut provider = self.provider_config();
        crate::merge_json(&mut provider, overrides);
        json!({"security": {"ldap_providers": {PROVIDER: provider}}})
    }

    async fn root(&self) -> ldap3::Ldap {
        let (connection, mut ldap) = LdapConnAsync::new(&self.url)
            .await
            .expect("connect to slapd");
        ldap3::drive!(connection);
        ldap.simple_bind(ROOT_DN, ROOT_PASSWORD)
            .await
            .and_then(|result| result.success())
            .expect("bind as slapd's root DN");
        ldap
    }

    /// Deletes a person's entry (their group memberships stay dangling, as in real life
    /// until someone cleans up).
    pub async fn delete_user(&self, uid: &str) {
        let mut ldap = self.root().await;
        ldap.delete(&user_dn(uid))
            .await
            .and_then(|result| result.success())
            .unwrap_or_else(|e| panic!("delete {uid}: {e}"));
        let _ = ldap.unbind().await;
    }

    /// Takes a person out of a group (the overlay updates their `memberOf`).
    pub async fn remove_from_group(&self, uid: &str, group_dn: &str) {
        let mut ldap = self.root().await;
        let member = user_dn(uid);
        ldap.modify(
            group_dn,
            vec![Mod::Delete(
                "member",
                [member.as_str()].into_iter().collect(),
            )],
        )
        .await
        .and_then(|result| result.success())
        .unwrap_or_else(|e| panic!("remove {uid} from {group_dn}: {e}"));
        let _ = ldap.unbind().await;
    }

    /// Changes a person's mail address.
    pub async fn set_mail(&self, uid: &str, mail: &str) {
        let mut ldap = self.root().await;
        ldap.modify(
            &user_dn(uid),
            vec![Mod::Replace("mail", [mail].into_iter().collect())],
        )
        .await
        .and_then(|result| result.success())
        .unwrap_or_else(|e| panic!("set {uid}'s mail: {e}"));
        let _ = ldap.unbind().await;
    }
}

/// A provider config for the test directory at `url` (any `ldap://` or `ldaps://` URL).
pub fn provider_config(url: &str) -> Value {
    json!({
        "server_address": url,
        "service_account_auth": {"user": SERVICE_DN, "password": SERVICE_PASSWORD},
        "username_attributes": ["uid", "mail"],
        "uid_attribute": "entryUUID",
        "mail_attribute": "mail",
        "user_query": {
            "base_dn": PEOPLE_DN,
            "filter": format!("&(objectClass=inetOrgPerson)(memberOf={USERS_GROUP})"),
        },
        "admin_query": {
            "base_dn": PEOPLE_DN,
            "filter": format!("&(objectClass=inetOrgPerson)(memberOf={ADMINS_GROUP})"),
        },
        "timeout_seconds": 5,
    })
}

fn slapd_conf(dir: &Path, certificates: Option<&TestCertificates>) -> String {
    let schema = first_existing(
        &["/etc/ldap/schema", "/etc/openldap/schema"],
        "schema directory",
    );
    let modules = first_existing(
        &[
            "/usr/lib/ldap",
            "/usr/lib64/openldap",
            "/usr/lib/openldap",
            "/usr/libexec/openldap",
        ],
        "module directory",
    );
    let mut conf = String::new();
    for file in ["core", "cosine", "inetorgperson"] {
        conf.push_str(&format!("include {}/{file}.schema\n", schema.display()));
    }
    conf.push_str(&format!(
        "modulepath {}\nmoduleload back_mdb\nmoduleload memberof\n",
        modules.display()
    ));
    conf.push_str(&format!(
        "pidfile {}\nargsfile {}\n",
        dir.join("slapd.pid").display(),
        dir.join("slapd.args").display()
    ));
    if let Some(certificates) = certificates {
        conf.push_str(&format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            certificates.ca.display(),
            certificates.cert.display(),
            certificates.key.display()
        ));
    }
    conf.push_str(&format!(
        "\ndatabase mdb\nmaxsize 16777216\nsuffix \"{BASE_DN}\"\nrootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PASSWORD}\ndirectory {}\noverlay memberof\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none\n",
        dir.join("db").display()
    ));
    conf
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}
