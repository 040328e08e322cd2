//! The engine's steps through its seams, with no root, namespaces or
//! registry: a fake `Executor` plays RUN steps, a `MemoryCache` keeps
//! cache entries, and the image's layers are read back as tars.

use kiln_cache::{CacheOutcome, LayerCache, MemoryCache};
use kiln_dockerfile::{Plan, PlanOptions};
use kiln_engine::{BuildError, BuildOptions, CacheLocation, CacheSettings, Services, StepRecord};
use kiln_image::BuiltImage;
use kiln_layer::Compression;
use kiln_sandbox::fake::FakeExecutor;
use kiln_sandbox::{Isolation, RootKind, StepOutcome, StepRequest};
use kiln_snapshot::{meta_of, Change};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

struct Fixture {
    context: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Fixture {
    fn new(dockerfile: &str, files: &[(&str, &str)]) -> Fixture {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
        for (path, text) in files {
            let p = context.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Fixture {
            context,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn options(&self, run: &str, cache: bool) -> BuildOptions {
        let work = self.state.path().join(run);
        std::fs::create_dir_all(&work).unwrap();
        BuildOptions {
            context_dir: self.context.path().to_path_buf(),
            dockerfile: self.context.path().join("Dockerfile"),
            labels: Vec::new(),
            reproducible: true,
            source_date_epoch: None,
            work_dir: work,
            compression: Compression::Gzip(1),
            kiln_dir: self.state.path().join("kiln"),
            registry: Default::default(),
            isolation: Default::default(),
            ignore_paths: Vec::new(),
            ignore_var_run: true,
            force: false,
            secrets: Vec::new(),
            ssh: Vec::new(),
            jobs: 2,
            cache: cache.then(|| CacheSettings {
                repo: CacheLocation::Layout(self.state.path().join("unused")),
                ttl: 3600,
                run_layers: true,
                copy_layers: true,
                push: true,
                explain: true,
            }),
            cache_dir: None,
            upload_layers_to: None,
            base_blobs: Default::default(),
            attest: Default::default(),
        }
    }

    fn try_build(
        &self,
        run: &str,
        services: Services,
        cache: bool,
    ) -> Result<(BuiltImage, Vec<StepRecord>), BuildError> {
        self.try_build_with_args(run, services, cache, &[])
    }

    fn try_build_with_args(
        &self,
        run: &str,
        services: Services,
        cache: bool,
        args: &[(&str, &str)],
    ) -> Result<(BuiltImage, Vec<StepRecord>), BuildError> {
        let text = std::fs::read_to_string(self.context.path().join("Dockerfile")).unwrap();
        let ast = kiln_dockerfile::parse("Dockerfile", &text).unwrap();
        let mut options = PlanOptions::default();
        for (k, v) in args {
            options.build_args.insert(k.to_string(), v.to_string());
        }
        let plan = Plan::new(ast, options).unwrap();
        let (events, _rx) = std::sync::mpsc::channel();
        kiln_engine::build(&plan, &self.options(run, cache), services, events)
            .map(|f| (f.image, f.records))
    }

    fn build(&self, run: &str, services: Services, cache: bool) -> (BuiltImage, Vec<StepRecord>) {
        self.try_build(run, services, cache).unwrap()
    }
}

/// A step that creates `/made-by-run` holding its command line.
fn make_file(step: &StepRequest) -> StepOutcome {
    let out = step.step_dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("made-by-run");
    std::fs::write(&file, step.process.argv.join(" ")).unwrap();
    let meta = meta_of(&file, &std::fs::symlink_metadata(&file).unwrap()).unwrap();
    StepOutcome {
        exit_code: 0,
        changes: vec![Change::Upsert("/made-by-run".into(), meta)],
        upper: None,
        hint: None,
    }
}

/// Every layer's entries: path -> file content (directories: "dir").
fn files(image: &BuiltImage) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for layer in &image.layers {
        let file = std::fs::File::open(&layer.path).unwrap();
        let (_, reader) = kiln_layer::open_archive(file).unwrap();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            if entry.header().entry_type().is_dir() {
                text.push_str("dir");
            } else {
                entry.read_to_string(&mut text).unwrap();
            }
            out.insert(path.trim_end_matches('/').to_string(), text);
        }
    }
    out
}

fn fake(script: fn(&StepRequest) -> StepOutcome) -> Arc<FakeExecutor> {
    Arc::new(FakeExecutor::new(script))
}

fn services(executor: &Arc<FakeExecutor>, cache: Option<&Arc<MemoryCache>>) -> Services {
    Services {
        isolation: Some(Isolation::new(executor.clone(), RootKind::Stacked)),
        cache: cache.map(|c| Box::new(c.clone()) as Box<dyn LayerCache>),
        shared_steps: None,
    }
}

#[test]
fn a_run_steps_changes_are_folded_into_the_tree_and_committed() {
    let f = Fixture::new(
        "FROM scratch\nARG V=1\nENV E=x\nUSER 7:8\nWORKDIR /w\nRUN make it\n",
        &[],
    );
    let exec = fake(make_file);
    let (image, records) = f.build("a", services(&exec, None), false);
    let ran = exec.ran();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].argv, ["/bin/sh", "-c", "make it"]);
    assert_eq!((ran[0].uid, ran[0].gid, ran[0].cwd.as_str()), (7, 8, "/w"));
    assert!(ran[0].env.contains(&"E=x".to_string()));
    assert!(ran[0].env.contains(&"V=1".to_string()), "ARGs reach RUN");
    let files = files(&image);
    assert_eq!(
        files.get("made-by-run").map(String::as_str),
        Some("/bin/sh -c make it")
    );
    // WORKDIR's layer, then RUN's.
    assert_eq!(image.layers.len(), 2);
    let run = records.last().unwrap();
    assert_eq!(run.cache, CacheOutcome::Off);
    assert_eq!(
        run.layer_digest.as_deref(),
        Some(image.layers[1].digest.as_str())
    );
}

#[test]
fn a_failing_run_names_the_line_and_the_exit_code() {
    let f = Fixture::new("FROM scratch\nRUN false\n", &[]);
    let exec = fake(|_| StepOutcome {
        exit_code: 3,
        ..Default::default()
    });
    let err = f
        .try_build("a", services(&exec, None), false)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Dockerfile:2:"), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
}

#[test]
fn a_miss_stores_and_a_hit_executes_nothing() {
    let f = Fixture::new(
        "FROM scratch\nCOPY a.txt /a.txt\nRUN make it\n",
        &[("a.txt", "A")],
    );
    let cache = Arc::new(MemoryCache::new(3600));
    let first = fake(make_file);
    let (image1, records1) = f.build("1", services(&first, Some(&cache)), true);
    assert_eq!(first.ran().len(), 1);
    assert!(records1
        .iter()
        .all(|r| matches!(r.cache, CacheOutcome::Miss(_))));
    assert_eq!(cache.len(), 2, "the COPY and the RUN were stored");

    let second = fake(make_file);
    let (image2, records2) = f.build("2", services(&second, Some(&cache)), true);
    assert!(second.ran().is_empty(), "a hit runs no command");
    assert!(records2.iter().all(|r| r.cache == CacheOutcome::Hit));
    assert_eq!(image1.manifest_digest, image2.manifest_digest);

    // A changed file misses from its COPY on, and says why.
    std::fs::write(f.context.path().join("a.txt"), "B").unwrap();
    let third = fake(make_file);
    let (_, records3) = f.build("3", services(&third, Some(&cache)), true);
    assert_eq!(third.ran().len(), 1);
    match &records3[0].cache {
        CacheOutcome::Miss(reasons) => {
            assert!(reasons.iter().any(|r| r.contains("a.txt")), "{reasons:?}")
        }
        other => panic!("expected a miss, got {other:?}"),
    }
}

#[test]
fn copy_places_sources_as_buildkit_does() {
    let f = Fixture::new(
        "FROM scratch\nCOPY src /dst/\nCOPY a.txt /into/\nCOPY a.txt /renamed\n\
         WORKDIR /w\nCOPY a.txt rel/\nCOPY *.md /docs\n",
        &[
            ("src/x.txt", "X"),
            ("src/sub/y.txt", "Y"),
            ("a.txt", "A"),
            ("r.md", "R"),
            ("s.md", "S"),
        ],
    );
    let exec = fake(make_file);
    let (image, _) = f.build("a", services(&exec, None), false);
    let files = files(&image);
    let get = |p: &str| files.get(p).map(String::as_str);
    // A directory's contents, not the directory itself.
    assert_eq!(get("dst/x.txt"), Some("X"));
    assert_eq!(get("dst/sub/y.txt"), Some("Y"));
    assert!(!files.contains_key("dst/src"));
    // A trailing slash means "into"; without it the file is renamed.
    assert_eq!(get("into/a.txt"), Some("A"));
    assert_eq!(get("renamed"), Some("A"));
    // Relative destinations are under WORKDIR. Matches are copied in
    // turn: with no trailing slash each one lands on the path itself, the
    // last one staying (BuildKit's copier; docker 20.10 agrees).
    assert_eq!(get("w/rel/a.txt"), Some("A"));
    assert_eq!(get("docs"), Some("S"));
    assert!(exec.ran().is_empty());
}

#[test]
fn copy_from_a_stage_reads_that_stages_tree() {
    let f = Fixture::new(
        "FROM scratch AS build\nRUN make it\nFROM scratch\nCOPY --from=build /made-by-run /out/\n",
        &[],
    );
    let exec = fake(make_file);
    let (image, _) = f.build("a", services(&exec, None), false);
    assert_eq!(
        files(&image).get("out/made-by-run").map(String::as_str),
        Some("/bin/sh -c make it")
    );
}

/// What a case changes between two builds.
enum Change2 {
    /// A context file's content.
    File(&'static str, &'static str),
    /// A build arg's value.
    Arg(&'static str, &'static str),
}

/// One input of one instruction family: the last step of `dockerfile`
/// must miss when `relevant` changes and hit when `irrelevant` does.
struct KeyCase {
    family: &'static str,
    dockerfile: &'static str,
    files: &'static [(&'static str, &'static str)],
    args: &'static [(&'static str, &'static str)],
    relevant: Change2,
    irrelevant: Change2,
}

/// Every instruction family's key comes from what the step resolved: a
/// change of each input it reads misses, a change of anything else hits.
/// The steps run with the fake executor against the memory cache.
#[test]
fn each_familys_key_changes_with_each_of_its_inputs_and_nothing_else() {
    use Change2::{Arg, File};
    let files: &[(&str, &str)] = &[
        ("a.txt", "A"),
        ("other.txt", "O"),
        ("d/keep.txt", "K"),
        ("d/skip.log", "L"),
        ("m/f", "M"),
    ];
    let cases = [
        KeyCase {
            family: "COPY: a context file's content",
            dockerfile: "FROM scratch\nCOPY a.txt /a.txt\n",
            files,
            args: &[],
            relevant: File("a.txt", "A2"),
            irrelevant: File("other.txt", "O2"),
        },
        KeyCase {
            family: "COPY --exclude: only the files it copies",
            dockerfile: "FROM scratch\nCOPY --exclude=*.log d /d\n",
            files,
            args: &[],
            relevant: File("d/keep.txt", "K2"),
            irrelevant: File("d/skip.log", "L2"),
        },
        KeyCase {
            family: "COPY: an arg its words name",
            dockerfile: "FROM scratch\nARG SRC=a.txt\nARG UNUSED\nCOPY $SRC /x\n",
            files,
            args: &[("SRC", "a.txt"), ("UNUSED", "1")],
            relevant: Arg("SRC", "other.txt"),
            irrelevant: Arg("UNUSED", "2"),
        },
        KeyCase {
            family: "COPY heredoc: its expanded args",
            dockerfile: "FROM scratch\nARG V=1\nARG W=1\nCOPY <<EOF /h\nv=$V\nEOF\n",
            files,
            args: &[("V", "1"), ("W", "1")],
            relevant: Arg("V", "2"),
            irrelevant: Arg("W", "2"),
        },
        KeyCase {
            family: "COPY --from: the stage it reads",
            dockerfile: "FROM scratch AS s\nCOPY a.txt /a\nFROM scratch\nCOPY --from=s /a /b\n",
            files,
            args: &[],
            relevant: File("a.txt", "A2"),
            irrelevant: File("other.txt", "O2"),
        },
        KeyCase {
            family: "ADD: a context file's content",
            dockerfile: "FROM scratch\nADD a.txt /a.txt\n",
            files,
            args: &[],
            relevant: File("a.txt", "A2"),
            irrelevant: File("other.txt", "O2"),
        },
        KeyCase {
            family: "RUN: every arg in scope",
            dockerfile: "FROM scratch\nARG A=1\nRUN make\n",
            files,
            args: &[("A", "1")],
            relevant: Arg("A", "2"),
            irrelevant: File("a.txt", "A2"),
        },
        KeyCase {
            family: "RUN --mount=type=bind: the files it shows",
            dockerfile: "FROM scratch\nRUN --mount=type=bind,source=m,target=/m make\n",
            files,
            args: &[],
            relevant: File("m/f", "M2"),
            irrelevant: File("a.txt", "A2"),
        },
        KeyCase {
            family: "RUN --mount from=: the stage it mounts",
            dockerfile: "FROM scratch AS s\nCOPY a.txt /a\nFROM scratch\nRUN --mount=from=s,target=/s make\n",
            files,
            args: &[],
            relevant: File("a.txt", "A2"),
            irrelevant: File("other.txt", "O2"),
        },
        KeyCase {
            family: "ENV (through the step after it): an arg its words name",
            dockerfile: "FROM scratch\nARG V=1\nARG W=1\nENV X=$V\nRUN make\n",
            files,
            args: &[("V", "1"), ("W", "1")],
            relevant: Arg("V", "2"),
            irrelevant: File("a.txt", "A2"),
        },
        KeyCase {
            family: "WORKDIR (through the step after it): an arg its words name",
            dockerfile: "FROM scratch\nARG D=/a\nWORKDIR $D\nCOPY a.txt .\n",
            files,
            args: &[("D", "/a")],
            relevant: Arg("D", "/b"),
            irrelevant: File("other.txt", "O2"),
        },
        KeyCase {
            family: "LABEL (through the step after it): an arg its words name",
            dockerfile: "FROM scratch\nARG L=1\nLABEL l=$L\nCOPY a.txt /a\n",
            files,
            args: &[("L", "1")],
            relevant: Arg("L", "2"),
            irrelevant: File("other.txt", "O2"),
        },
    ];
    for case in cases {
        for (change, expect_hit) in [(&case.relevant, false), (&case.irrelevant, true)] {
            let f = Fixture::new(case.dockerfile, case.files);
            let cache = Arc::new(MemoryCache::new(3600));
            let mut args: Vec<(&str, &str)> = case.args.to_vec();
            let (_, first) = f
                .try_build_with_args("1", services(&fake(make_file), Some(&cache)), true, &args)
                .unwrap_or_else(|e| panic!("{}: {e}", case.family));
            assert!(
                matches!(first.last().unwrap().cache, CacheOutcome::Miss(_)),
                "{}: the first build misses",
                case.family
            );
            match change {
                Change2::File(path, text) => {
                    std::fs::write(f.context.path().join(path), text).unwrap()
                }
                Change2::Arg(name, value) => {
                    args.retain(|(k, _)| k != name);
                    args.push((name, value));
                }
            }
            let (_, second) = f
                .try_build_with_args("2", services(&fake(make_file), Some(&cache)), true, &args)
                .unwrap_or_else(|e| panic!("{}: {e}", case.family));
            let outcome = &second.last().unwrap().cache;
            assert_eq!(
                *outcome == CacheOutcome::Hit,
                expect_hit,
                "{}: after changing {}, the step's outcome: {outcome:?}",
                case.family,
                match change {
                    Change2::File(p, _) => format!("file {p}"),
                    Change2::Arg(a, _) => format!("arg {a}"),
                }
            );
        }
    }
}

/// Every `RUN --mount` option is expanded, as BuildKit's parseMount
/// expands each value: a tmpfs `size=$SIZE` gets its number, a bind's
/// `source=$DIR` its directory.
#[test]
fn mount_options_expand_their_args() {
    use kiln_sandbox::MountSource;
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let f = Fixture::new(
        "FROM scratch\nARG SIZE=4096\nARG DIR=m\n\
         RUN --mount=type=tmpfs,target=/t,size=$SIZE --mount=source=$DIR,target=/m make\n",
        &[("m/f", "M")],
    );
    let exec = fake(|step| {
        for m in &step.mounts {
            let what = match &m.source {
                MountSource::Tmpfs { size } => format!("tmpfs {size:?}"),
                MountSource::Host { path, .. } => format!("host {}", path.display()),
            };
            SEEN.lock().unwrap().push((m.target.clone(), what));
        }
        make_file(step)
    });
    f.build("1", services(&exec, None), false);
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen[0], ("/t".to_string(), "tmpfs Some(4096)".to_string()));
    assert_eq!(seen[1].0, "/m");
    assert!(seen[1].1.ends_with("/m"), "{seen:?}");
}

/// An ARG's default sees the names declared before it in the same ARG
/// (BuildKit's dispatchArg expands each in turn).
#[test]
fn an_arg_default_sees_the_args_declared_before_it() {
    let f = Fixture::new("FROM scratch\nARG A=1 B=${A}2\nENV C=$B\n", &[]);
    let (image, _) = f.build("1", services(&fake(make_file), None), false);
    let env = image.config.config.env.clone().unwrap_or_default();
    assert!(env.contains(&"C=12".to_string()), "{env:?}");
}
