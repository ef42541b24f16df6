//! The house's plan, held: imports between the modules of `src/` flow one way (no circles), and
//! routes know neither Kafka nor the runtime, and the product never imports the tools. Test code (`#[cfg(test)]`) is left out.

use std::collections::{BTreeMap, BTreeSet};

/// Module → the crate modules its non-test code names (`crate::<module>`).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = |module: &str, path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let deps = graph.entry(module.to_string()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    };
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            // A module with a tree of its own (routes/, pipeline/, …): every file in it is it.
            for file in rust_files(&path) {
                visit(&stem, &file);
            }
        } else if stem != "main" && stem != "lib" {
            visit(&stem, &path);
        }
    }
    graph
}

/// The `.rs` files under `dir`, at any depth.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            // (a module's `tests.rs` is its `#[cfg(test)] mod tests`: test code, left out)
            files.push(path);
        }
    }
    files
}

#[test]
fn imports_flow_one_way() {
    let graph = imports();
    // Depth-first search for a path back to where it started.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == &path[0] {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if !path.contains(next) && path.len() < graph.len() {
                path.push(next.clone());
                if let Some(c) = circle(graph, path) {
                    return Some(c);
                }
                path.pop();
            }
        }
        None
    }
    for module in graph.keys() {
        if let Some(c) = circle(&graph, &mut vec![module.clone()]) {
            panic!("an import circle: {}", c.join(" → "));
        }
    }
}

#[test]
fn routes_know_no_kafka_no_runtime_and_no_wall_clock() {
    let routes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let files = rust_files(&routes);
    assert!(files.len() > 5, "the route modules are found");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for word in ["rdkafka", "tokio", "Timestamp::now(", "SystemTime::now(", "Datum::vandaag(", "Instant::now("] {
            assert!(!code.contains(word), "{} uses {word}: routes get what they need as values", path.display());
        }
    }
}

#[test]
fn the_product_never_imports_the_tools() {
    for (module, deps) in imports() {
        assert!(
            module == "tools" || !deps.contains("tools"),
            "{module} imports crate::tools (demo, bench, registry, samples): the product must read on its own"
        );
    }
}
