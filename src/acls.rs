//! Least privilege: the ACLs each role's principal needs, derived from the `write`/`read` roles
//! of every topic in topics.yaml (`acls plan`), and `acls apply`, which creates them through the
//! Admin API (librdkafka's CreateAcls; rust-rdkafka has no wrapper for it, hence the FFI below).

use crate::config::Config;
use crate::topology::Topology;
use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::ffi::{CStr, CString};
use std::fmt;
use std::time::Duration;

/// The roles topics.yaml may name.
pub const ROLES: [&str; 6] = ["portal", "gzac", "bridge", "notifier", "operator", "integrator"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Topic,
    Group,
    TransactionalId,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Describe,
    DescribeConfigs,
    IdempotentWrite,
}

/// One allow rule: `principal` may do `operation` on the resource `name` (or every name starting
/// with it, when `prefixed`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    /// The municipality whose role this is (empty: the bridge's own, or a deployment of one).
    pub gemeente: String,
    pub role: String,
    pub principal: String,
    pub resource: Resource,
    pub name: String,
    pub prefixed: bool,
    pub operation: Operation,
}

/// The principal of a role, as the broker authenticates it (`acls.principals`, default
/// `User:<role>`).
pub fn principal(cfg: &Config, role: &str) -> String {
    cfg.acls.principals.get(role).cloned().unwrap_or_else(|| format!("User:{role}"))
}

/// Every ACL the roles need, sorted and without duplicates, refused when two roles' prefixes
/// overlap (one's groups or transactional ids would fall under the other's ACLs). The bridge:
/// read and write its topics, look up their limits (DescribeConfigs), its consumer groups
/// (`<group_id>.<route>`, `<group_id>.table`, …) and transactional ids
/// (`<group_id>.<route>.<instance>`) by the prefix `<group_id>.`. Other roles: their topics, and
/// consumer groups starting with their prefix (`acls.group_prefixes.<role>`, default `<role>.`);
/// the operator also transactional ids under it (`dlq replay`). Every writer may write
/// idempotently.
///
/// With many municipalities (`gemeenten`), each one's roles get its own topics only, by its own
/// principals (`gemeenten[].acls.principals`) and group prefixes (default `<its topic_prefix><role>.`);
/// the bridge's principal gets every municipality's.
pub fn plan(cfg: &Config, topology: &Topology) -> anyhow::Result<Vec<Acl>> {
    let gemeenten = cfg.gemeenten()?;
    let many = gemeenten.len() > 1;
    let mut acls: Vec<Acl> = Vec::new();
    for g in &gemeenten {
        for mut a in unchecked_plan(&g.cfg, topology) {
            if a.role == "bridge" {
                a.principal = principal(cfg, "bridge");
            } else if many {
                a.gemeente = g.id.clone();
            }
            acls.push(a);
        }
    }
    acls.sort();
    acls.dedup();
    let overlaps = overlaps(&acls);
    anyhow::ensure!(
        overlaps.is_empty(),
        "prefixes of different roles overlap, so one could join, describe or fence what is the other's: {}; \
         give each role a prefix of its own (`group_id`, `acls.group_prefixes`)",
        overlaps.join("; ")
    );
    Ok(acls)
}

/// Pairs of prefixed group or transactional-id ACLs of different roles where one prefix starts
/// with the other.
pub fn overlaps(acls: &[Acl]) -> Vec<String> {
    let prefixed: Vec<&Acl> = acls
        .iter()
        .filter(|a| a.prefixed && matches!(a.resource, Resource::Group | Resource::TransactionalId))
        .collect();
    let mut found = Vec::new();
    for a in &prefixed {
        for b in &prefixed {
            if (&a.gemeente, &a.role) < (&b.gemeente, &b.role)
                && a.resource == b.resource
                && (a.name.starts_with(&b.name) || b.name.starts_with(&a.name))
            {
                found.push(format!("{:?} prefix {:?} ({}) and {:?} ({})", a.resource, a.name, a.role, b.name, b.role));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn unchecked_plan(cfg: &Config, topology: &Topology) -> Vec<Acl> {
    let mut acls = Vec::new();
    let mut add = |role: &str, resource, name: String, prefixed, operation| {
        acls.push(Acl {
            gemeente: String::new(),
            role: role.to_string(),
            principal: principal(cfg, role),
            resource,
            name,
            prefixed,
            operation,
        })
    };
    for t in &topology.topics {
        let name = cfg.topic(&t.name);
        for role in &t.write {
            add(role, Resource::Topic, name.clone(), false, Operation::Write);
            add(role, Resource::Cluster, "kafka-cluster".into(), false, Operation::IdempotentWrite);
            if role == "bridge" {
                add(role, Resource::Topic, name.clone(), false, Operation::DescribeConfigs);
            }
        }
        for role in &t.read {
            add(role, Resource::Topic, name.clone(), false, Operation::Read);
            add(role, Resource::Group, cfg.role_prefix(role), true, Operation::Read);
        }
    }
    // The bridge's transactions, and the operator's `dlq replay`.
    for role in ["bridge", "operator"] {
        add(role, Resource::TransactionalId, cfg.role_prefix(role), true, Operation::Write);
        add(role, Resource::TransactionalId, cfg.role_prefix(role), true, Operation::Describe);
    }
    acls.sort();
    acls.dedup();
    acls
}

/// The README's table of who may write and read which topics, made from topics.yaml (a test
/// holds the README to it). Dead letters and internal topics are summed up, not listed.
pub fn role_table(topology: &Topology) -> String {
    let mut out = String::from("| role | writes | reads |\n|---|---|---|\n");
    for role in ROLES {
        let list = |pick: &dyn Fn(&crate::topology::TopicSpec) -> bool| {
            let mut names: Vec<String> = topology
                .topics
                .iter()
                .filter(|t| pick(t) && t.pattern != "dead-letter" && t.pattern != "internal")
                .map(|t| format!("`{}`", t.name))
                .collect();
            let internal = topology.topics.iter().filter(|t| pick(t) && t.pattern == "internal").count();
            let dead = topology.topics.iter().filter(|t| pick(t) && t.pattern == "dead-letter").count();
            if internal > 0 {
                names.push(format!("the {internal} internal topics"));
            }
            if dead > 0 {
                names.push(format!("the {dead} dead-letter topics"));
            }
            if names.is_empty() {
                "—".to_string()
            } else {
                names.join(", ")
            }
        };
        let writes = list(&|t| t.write.iter().any(|r| r == role));
        let reads = list(&|t| t.read.iter().any(|r| r == role));
        out.push_str(&format!("| `{role}` | {writes} | {reads} |\n"));
    }
    out
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern = if self.prefixed { "prefixed" } else { "literal" };
        let role = match self.gemeente.as_str() {
            "" => self.role.clone(),
            g => format!("{g}/{}", self.role),
        };
        write!(
            f,
            "{role:<10} {:<18} {:?} {:?} {} ({pattern})",
            self.principal, self.operation, self.resource, self.name
        )
    }
}

impl Acl {
    /// The `kafka-acls.sh` command that creates this rule, for clusters managed by hand.
    pub fn kafka_acls(&self, bootstrap: &str) -> String {
        let op = match self.operation {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
        };
        let resource = match self.resource {
            Resource::Topic => format!("--topic '{}'", self.name),
            Resource::Group => format!("--group '{}'", self.name),
            Resource::TransactionalId => format!("--transactional-id '{}'", self.name),
            Resource::Cluster => "--cluster".to_string(),
        };
        let pattern = if self.prefixed { " --resource-pattern-type prefixed" } else { "" };
        format!(
            "kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties --add --allow-principal '{}' --operation {op} {resource}{pattern}",
            self.principal
        )
    }

    /// librdkafka's resource type, operation and pattern type of this rule.
    fn kinds(&self) -> (rd::rd_kafka_ResourceType_t, rd::rd_kafka_AclOperation_t, rd::rd_kafka_ResourcePatternType_t) {
        use rd::rd_kafka_AclOperation_t as O;
        use rd::rd_kafka_ResourceType_t as R;
        let resource = match self.resource {
            Resource::Topic => R::RD_KAFKA_RESOURCE_TOPIC,
            Resource::Group => R::RD_KAFKA_RESOURCE_GROUP,
            Resource::TransactionalId => R::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
            Resource::Cluster => R::RD_KAFKA_RESOURCE_BROKER,
        };
        let operation = match self.operation {
            Operation::Read => O::RD_KAFKA_ACL_OPERATION_READ,
            Operation::Write => O::RD_KAFKA_ACL_OPERATION_WRITE,
            Operation::Describe => O::RD_KAFKA_ACL_OPERATION_DESCRIBE,
            Operation::DescribeConfigs => O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
            Operation::IdempotentWrite => O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
        };
        let pattern = if self.prefixed {
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED
        } else {
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL
        };
        (resource, operation, pattern)
    }

    fn binding(&self) -> anyhow::Result<*mut rd::rd_kafka_AclBinding_t> {
        let (resource, operation, pattern) = self.kinds();
        let (name, principal, host) = (CString::new(self.name.as_str())?, CString::new(self.principal.as_str())?, c"*");
        let mut err = [0 as std::ffi::c_char; 512];
        // SAFETY: every pointer is a valid C string for the call; librdkafka copies them.
        let b = unsafe {
            rd::rd_kafka_AclBinding_new(
                resource,
                name.as_ptr(),
                pattern,
                principal.as_ptr(),
                host.as_ptr(),
                operation,
                rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if b.is_null() {
            // SAFETY: librdkafka wrote a NUL-terminated message into `err`.
            let why = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            anyhow::bail!("ACL {self} is not valid: {why}");
        }
        Ok(b)
    }
}

/// Create `acls` on the cluster of `client` (which must be allowed to: a super user or one with
/// Alter on the cluster). Creating an ACL that exists is not an error, so this can run again.
pub fn apply(client: &ClientConfig, acls: &[Acl], timeout: Duration) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let rk = admin.inner().native_ptr();
    let mut bindings = acls.iter().map(Acl::binding).collect::<anyhow::Result<Vec<_>>>()?;
    // SAFETY: `rk` lives as long as `admin`; the queue, options, bindings and event are
    // created and destroyed here, each exactly once.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS);
        let mut err = [0 as std::ffi::c_char; 512];
        rd::rd_kafka_AdminOptions_set_request_timeout(options, timeout.as_millis() as i32, err.as_mut_ptr(), err.len());
        rd::rd_kafka_CreateAcls(rk, bindings.as_mut_ptr(), bindings.len(), options, queue);
        let event = rd::rd_kafka_queue_poll(queue, (timeout.as_millis() + 5000) as i32);
        let outcome = if event.is_null() {
            Err(anyhow::anyhow!("no answer to CreateAcls within {timeout:?}"))
        } else if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let why = CStr::from_ptr(rd::rd_kafka_event_error_string(event)).to_string_lossy().into_owned();
            Err(anyhow::anyhow!("CreateAcls failed: {why}"))
        } else {
            let result = rd::rd_kafka_event_CreateAcls_result(event);
            let mut n = 0usize;
            let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut n);
            let mut failures = Vec::new();
            for (i, acl) in acls.iter().enumerate().take(n) {
                let e = rd::rd_kafka_acl_result_error(*results.add(i));
                if !e.is_null() {
                    failures.push(format!("{acl}: {}", CStr::from_ptr(rd::rd_kafka_error_string(e)).to_string_lossy()));
                }
            }
            if failures.is_empty() {
                wait_until_visible(rk, queue, acls, timeout)
            } else {
                Err(anyhow::anyhow!("{} ACLs were refused: {}", failures.len(), failures.join("; ")))
            }
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
        // Destroys each binding (CreateAcls worked on copies).
        rd::rd_kafka_AclBinding_destroy_array(bindings.as_mut_ptr(), bindings.len());
        outcome
    }
}

/// Wait until the broker lists every rule of `acls` (DescribeAcls): a rule created is enforced
/// only once it reached the authorizer through the metadata log, a moment after CreateAcls.
///
/// # Safety
/// `rk` and `queue` are a live client's handle and a queue of it.
unsafe fn wait_until_visible(
    rk: *mut rd::rd_kafka_t,
    queue: *mut rd::rd_kafka_queue_t,
    acls: &[Acl],
    timeout: Duration,
) -> anyhow::Result<()> {
    use rd::rd_kafka_AclOperation_t as O;
    use rd::rd_kafka_ResourcePatternType_t as P;
    use rd::rd_kafka_ResourceType_t as R;
    type Key = (i32, String, i32, String, i32);
    let wanted: std::collections::BTreeSet<Key> = acls
        .iter()
        .map(|a| {
            let (r, o, p) = a.kinds();
            (r as i32, a.name.clone(), p as i32, a.principal.clone(), o as i32)
        })
        .collect();
    let deadline = std::time::Instant::now() + timeout;
    let mut err = [0 as std::ffi::c_char; 512];
    let filter = rd::rd_kafka_AclBindingFilter_new(
        R::RD_KAFKA_RESOURCE_ANY,
        std::ptr::null(),
        P::RD_KAFKA_RESOURCE_PATTERN_ANY,
        std::ptr::null(),
        std::ptr::null(),
        O::RD_KAFKA_ACL_OPERATION_ANY,
        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
        err.as_mut_ptr(),
        err.len(),
    );
    anyhow::ensure!(!filter.is_null(), "cannot make an ACL filter");
    let options = rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS);
    let text = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let mut seen: usize = 0;
    let outcome = loop {
        rd::rd_kafka_DescribeAcls(rk, filter, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, 10_000);
        if !event.is_null() {
            if rd::rd_kafka_event_error(event) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let result = rd::rd_kafka_event_DescribeAcls_result(event);
                let mut n = 0usize;
                let listed = rd::rd_kafka_DescribeAcls_result_acls(result, &mut n);
                let mut present = std::collections::BTreeSet::new();
                for i in 0..n {
                    let b = *listed.add(i);
                    present.insert((
                        rd::rd_kafka_AclBinding_restype(b) as i32,
                        text(rd::rd_kafka_AclBinding_name(b)),
                        rd::rd_kafka_AclBinding_resource_pattern_type(b) as i32,
                        text(rd::rd_kafka_AclBinding_principal(b)),
                        rd::rd_kafka_AclBinding_operation(b) as i32,
                    ));
                }
                seen = wanted.intersection(&present).count();
            }
            rd::rd_kafka_event_destroy(event);
        }
        if seen == wanted.len() {
            break Ok(());
        }
        if std::time::Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "only {seen} of {} ACLs are listed by the broker after {timeout:?}",
                wanted.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    rd::rd_kafka_AdminOptions_destroy(options);
    rd::rd_kafka_AclBinding_destroy(filter);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can(acls: &[Acl], role: &str, op: Operation, topic: &str) -> bool {
        acls.iter().any(|a| a.role == role && a.operation == op && a.resource == Resource::Topic && a.name == topic)
    }

    #[test]
    fn each_role_gets_only_what_topics_yaml_gives_it() {
        let cfg = Config::defaults();
        let acls = plan(&cfg, &Topology::load().unwrap()).unwrap();
        assert!(can(&acls, "portal", Operation::Write, "portaal.taakantwoorden.v1"));
        assert!(!acls
            .iter()
            .any(|a| a.role == "portal" && a.operation == Operation::Write && a.name.starts_with("gzac.")));
        assert!(!can(&acls, "portal", Operation::Read, "gzac.berichten.v1"));
        assert!(!can(&acls, "gzac", Operation::Write, "portaal.taakantwoorden.v1"));
        let notifier: Vec<&Acl> =
            acls.iter().filter(|a| a.role == "notifier" && a.resource == Resource::Topic).collect();
        assert_eq!(notifier.len(), 1);
        assert_eq!(notifier[0].name, "notificaties.opdrachten.v1");
        assert!(!acls.iter().any(|a| a.role == "integrator" && a.operation != Operation::Read));
        assert!(can(&acls, "bridge", Operation::Write, "gzac-portal-bridge.berichten-state.v1"));
        assert!(acls.iter().any(|a| a.role == "bridge"
            && a.resource == Resource::TransactionalId
            && a.prefixed
            && a.name == "gzac-portal-bridge."));
        // No other role's group or transactional-id prefix reaches the bridge's.
        for a in acls.iter().filter(|a| a.prefixed && a.role != "bridge") {
            assert!(!"gzac-portal-bridge.verzoek".starts_with(&a.name), "{a}");
            assert!(!"gzac-portal-bridge.verzoek.i0".starts_with(&a.name), "{a}");
        }
        let cmd = acls[0].kafka_acls("k1:9093");
        assert!(
            cmd.starts_with("kafka-acls.sh --bootstrap-server k1:9093") && cmd.contains("--allow-principal"),
            "{cmd}"
        );
    }

    #[test]
    fn the_readmes_role_table_is_topics_yaml() {
        let readme = include_str!("../README.md");
        let table = role_table(&Topology::load().unwrap());
        assert!(readme.contains(&table), "README.md's role table differs from topics.yaml; it should read:\n{table}");
    }

    #[test]
    fn each_municipalitys_roles_get_its_own_topics_and_groups_only() {
        let path = std::env::temp_dir().join(format!("acls-{}.yaml", uuid::Uuid::new_v4()));
        std::fs::write(&path, crate::config::tests::TWO_GEMEENTEN).unwrap();
        let cfg = Config::load_with_env(Some(&path), &[]).unwrap();
        let acls = plan(&cfg, &Topology::load().unwrap()).unwrap();
        let of = |g: &str, role: &str| acls.iter().filter(|a| a.gemeente == g && a.role == role).collect::<Vec<_>>();
        let utrecht = of("utrecht", "portal");
        assert!(utrecht.iter().all(|a| a.principal == "User:utrecht-portaal"));
        assert!(utrecht.iter().any(|a| a.operation == Operation::Write && a.name == "utrecht.portaal.verzoeken.v1"));
        for a in utrecht.iter().filter(|a| a.resource != Resource::Cluster) {
            assert!(a.name.starts_with("utrecht."), "{a}");
        }
        let zeist = of("zeist", "portal");
        assert!(zeist.iter().all(|a| a.principal == "User:portal"));
        assert!(zeist.iter().filter(|a| a.resource != Resource::Cluster).all(|a| a.name.starts_with("zeist.")));
        // The bridge reads and writes both, as one principal.
        assert!(can(&acls, "bridge", Operation::Read, "utrecht.portaal.verzoeken.v1"));
        assert!(can(&acls, "bridge", Operation::Read, "zeist.portaal.verzoeken.v1"));
        assert!(acls.iter().filter(|a| a.role == "bridge").all(|a| a.gemeente.is_empty()));
    }

    #[test]
    fn overlapping_prefixes_are_refused() {
        let mut cfg = Config::defaults();
        cfg.group_id = "gzac".into(); // the bridge's groups would start with the gzac role's `gzac.`
        let err = plan(&cfg, &Topology::load().unwrap()).unwrap_err().to_string();
        assert!(err.contains("overlap") && err.contains("\"gzac.\""), "{err}");
        let mut cfg = Config::defaults();
        cfg.acls.group_prefixes.insert("integrator".into(), "gzac-portal".into());
        assert!(plan(&cfg, &Topology::load().unwrap()).is_err());
    }
}
