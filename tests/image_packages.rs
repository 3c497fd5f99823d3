//! One list of the image's runtime Debian packages: `image/packages.txt`. The Dockerfile and
//! `scripts/build-image.sh` (the image without Docker) must both install exactly that list, so the
//! two images cannot drift apart: neither may name a package of its own, and both must read the
//! file. The checks run on the files' text; nothing is built.

use std::fs;
use std::path::PathBuf;

const PACKAGES_FILE: &str = "image/packages.txt";

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The package names in `image/packages.txt`: `#` starts a comment, blank lines are skipped.
fn packages() -> Vec<String> {
    read(PACKAGES_FILE)
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Debian policy 5.6.1: lower case letters, digits, `+ - .`; at least two characters, starting
/// with an alphanumeric.
fn valid_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// The Dockerfile's instructions, with `\`-continued lines joined and comment lines dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The instructions of the last stage (the runtime image); earlier stages install build tools.
fn runtime_stage(dockerfile: &str) -> Vec<String> {
    let all = instructions(dockerfile);
    let start = all
        .iter()
        .rposition(|i| i.to_ascii_uppercase().starts_with("FROM "))
        .expect("the Dockerfile has a FROM");
    all[start..].to_vec()
}

/// Removes `$( ... )` command substitutions (not nested), returning the rest and the removed parts.
fn split_substitutions(s: &str) -> (String, Vec<String>) {
    let (mut rest, mut subs) = (String::new(), Vec::new());
    let mut tail = s;
    while let Some(open) = tail.find("$(") {
        rest.push_str(&tail[..open]);
        let close = tail[open..]
            .find(')')
            .map(|c| open + c)
            .unwrap_or(tail.len() - 1);
        subs.push(tail[open..=close].to_owned());
        tail = &tail[close + 1..];
    }
    rest.push_str(tail);
    (rest, subs)
}

/// What is wrong with the runtime stage's package installs: every `apt-get install` (or
/// `apt install`) must take its packages only from a command substitution reading
/// `packages.txt`, copied in from `image/packages.txt`. Empty when the Dockerfile is right.
fn dockerfile_violations(dockerfile: &str) -> Vec<String> {
    let stage = runtime_stage(dockerfile);
    let mut problems = Vec::new();
    if !stage
        .iter()
        .any(|i| i.starts_with("COPY ") && i.contains(PACKAGES_FILE))
    {
        problems.push(format!("the runtime stage does not COPY {PACKAGES_FILE}"));
    }
    let mut installs = 0;
    for instr in stage.iter().filter(|i| i.starts_with("RUN ")) {
        // Shell commands of the RUN line, split at `&&`, `;` and `|`.
        let commands = instr[4..]
            .split("&&")
            .flat_map(|c| c.split(';'))
            .flat_map(|c| c.split('|'));
        for cmd in commands {
            let (rest, subs) = split_substitutions(cmd);
            let words: Vec<&str> = rest.split_whitespace().collect();
            let Some(pos) = words.windows(2).position(|w| {
                (w[0] == "apt-get" || w[0] == "apt" || w[0].ends_with("/apt-get"))
                    && w[1] == "install"
            }) else {
                continue;
            };
            installs += 1;
            let named: Vec<&str> = words[pos + 2..]
                .iter()
                .copied()
                .filter(|w| !w.starts_with('-'))
                .collect();
            if !named.is_empty() {
                problems.push(format!(
                    "`{}` names packages of its own: {named:?} (add them to {PACKAGES_FILE})",
                    cmd.trim()
                ));
            }
            if !subs.iter().any(|s| s.contains("packages.txt")) {
                problems.push(format!(
                    "`{}` does not install from packages.txt",
                    cmd.trim()
                ));
            }
        }
    }
    if installs == 0 {
        problems.push("the runtime stage has no apt-get install".to_owned());
    }
    problems
}

/// Whether `word` occurs in `text` as a whole package-name token.
fn contains_token(text: &str, word: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

#[test]
fn packages_file_is_a_plain_list_of_package_names() {
    let pkgs = packages();
    assert!(!pkgs.is_empty(), "{PACKAGES_FILE} lists no packages");
    for p in &pkgs {
        assert!(
            valid_package_name(p),
            "{PACKAGES_FILE}: `{p}` is not a Debian package name"
        );
    }
    let mut sorted = pkgs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), pkgs.len(), "{PACKAGES_FILE} has duplicates");
    // The binary links GnuTLS and libqb dynamically; the image must carry them.
    for lib in ["libgnutls30", "libqb100"] {
        assert!(pkgs.iter().any(|p| p == lib), "{PACKAGES_FILE} lacks {lib}");
    }
}

#[test]
fn dockerfile_installs_only_from_the_packages_file() {
    let problems = dockerfile_violations(&read("Dockerfile"));
    assert!(problems.is_empty(), "Dockerfile: {problems:#?}");
}

#[test]
fn dockerfile_check_rejects_a_package_added_to_the_dockerfile() {
    let dockerfile = read("Dockerfile");
    let line = "--no-install-recommends $(";
    assert!(
        dockerfile.contains(line),
        "the Dockerfile's install line changed; adapt this test"
    );
    // A package added next to the list, a second install line, a list of its own again.
    let extra_word = dockerfile.replacen(line, "--no-install-recommends curl $(", 1);
    let extra_run = dockerfile.replacen(
        "COPY --from=build",
        "RUN apt-get update && apt-get install -y curl\nCOPY --from=build",
        1,
    );
    let own_list = dockerfile.replacen(
        "$(sed 's/#.*//' /tmp/packages.txt)",
        "\\\n        libgnutls30 libqb100 procps",
        1,
    );
    for (what, text) in [
        ("extra word", extra_word),
        ("extra RUN", extra_run),
        ("own list", own_list),
    ] {
        assert_ne!(text, dockerfile, "{what}: mutation did not apply");
        assert!(
            !dockerfile_violations(&text).is_empty(),
            "{what}: not detected"
        );
    }
}

#[test]
fn build_image_script_installs_only_from_the_packages_file() {
    let script = read("scripts/build-image.sh");
    assert!(
        script.contains(PACKAGES_FILE),
        "scripts/build-image.sh does not read {PACKAGES_FILE}"
    );
    let code: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    // mmdebstrap's --include must come from a variable (the file's names), never a literal list.
    for line in code.iter().filter(|l| l.contains("--include=")) {
        let value = line.split("--include=").nth(1).unwrap_or("");
        assert!(
            value.starts_with("\"$") || value.starts_with('$'),
            "scripts/build-image.sh: literal --include in `{}`",
            line.trim()
        );
    }
    for pkg in packages() {
        for line in &code {
            let code_part = line.split(" # ").next().unwrap_or(line);
            assert!(
                !contains_token(code_part, &pkg),
                "scripts/build-image.sh names package {pkg} itself: `{}`",
                line.trim()
            );
        }
    }
}

#[test]
fn both_images_have_the_same_command_and_paths() {
    let dockerfile = read("Dockerfile");
    let script = read("scripts/build-image.sh");
    for (docker, oci) in [
        (
            r#"CMD ["/usr/sbin/kubemaker-remoted"]"#,
            r#""Cmd":["/usr/sbin/kubemaker-remoted"]"#,
        ),
        ("EXPOSE 3121", r#""3121/tcp":{}"#),
        (
            "ln -s kubemaker-remoted /usr/sbin/pacemaker-remoted",
            "ln -sfn kubemaker-remoted \"$root/usr/sbin/pacemaker-remoted\"",
        ),
    ] {
        assert!(dockerfile.contains(docker), "Dockerfile lacks `{docker}`");
        assert!(script.contains(oci), "scripts/build-image.sh lacks `{oci}`");
    }
}
