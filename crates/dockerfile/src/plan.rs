//! The build plan: stages, global (meta) ARGs resolved for FROM, the stage
//! graph (FROM, COPY --from, RUN --mount from=) and the stages the target
//! needs, in an order where every stage comes after those it depends on.

use crate::error::ParseError;
use crate::instructions::{self, Instruction};
use crate::invalid::Invalid;
use crate::parser::{Ast, Node};
use crate::shell::Lex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An OS/architecture pair as in `linux/amd64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform kiln runs on, in OCI terms.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "arm" => "arm",
            other => other,
        };
        let variant = match arch {
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, Invalid> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(Invalid::Platform(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            arch: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `--build-arg` values as given (bare `K` already resolved from the
/// environment by the caller).
pub type BuildArgs = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub build_args: BuildArgs,
    pub target: Option<String>,
    pub target_platform: Platform,
    pub build_platform: Platform,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: BuildArgs::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    Scratch,
    /// An image reference, expanded with the global ARGs.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One instruction of a stage, with the node it came from (for locations).
#[derive(Debug, Clone)]
pub struct Step {
    pub node: Node,
    pub instruction: Instruction,
    /// What `COPY --from` names, resolved once here (expanded with the
    /// ARGs in scope, as BuildKit's dockerfile2llb resolves it).
    pub copy_from: Option<CopySource>,
}

/// The source of a `COPY --from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub base: StageBase,
    pub platform: Option<String>,
    pub from: Node,
    pub steps: Vec<Step>,
    /// Stages this one needs (base, COPY --from, RUN --mount from=).
    pub deps: BTreeSet<usize>,
    /// Image references this stage copies from (COPY --from=image).
    pub image_deps: BTreeSet<String>,
}

impl Stage {
    /// `name` or the index, as users refer to it.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub ast: Ast,
    pub stages: Vec<Stage>,
    pub target: usize,
    /// Stages needed for the target, dependencies first, target last.
    pub order: Vec<usize>,
    /// Global ARGs (before the first FROM) with their resolved values,
    /// including the predefined platform ARGs.
    pub meta_args: BTreeMap<String, String>,
    /// Global ARG names declared in the Dockerfile (a stage's bare `ARG X`
    /// takes the global value of X).
    pub global_arg_names: BTreeSet<String>,
    pub options: PlanOptions,
}

/// The names [`platform_args`] defines.
pub const PLATFORM_ARG_NAMES: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// The ARGs BuildKit defines without a declaration (platform ARGs are
/// visible in the global scope; a stage must declare them to see them).
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("TARGETPLATFORM".into(), target.to_string());
    m.insert("TARGETOS".into(), target.os.clone());
    m.insert("TARGETARCH".into(), target.arch.clone());
    m.insert(
        "TARGETVARIANT".into(),
        target.variant.clone().unwrap_or_default(),
    );
    m.insert("BUILDPLATFORM".into(), build.to_string());
    m.insert("BUILDOS".into(), build.os.clone());
    m.insert("BUILDARCH".into(), build.arch.clone());
    m.insert(
        "BUILDVARIANT".into(),
        build.variant.clone().unwrap_or_default(),
    );
    m
}

/// Proxy ARGs usable without declaration (never stored in the image).
pub const PREDEFINED_PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Plan {
    pub fn new(ast: Ast, options: PlanOptions) -> Result<Plan, ParseError> {
        let lex = Lex::new(ast.escape);
        let mut meta_args = platform_args(&options.target_platform, &options.build_platform);
        let mut global_arg_names = BTreeSet::new();
        let mut stages: Vec<Stage> = Vec::new();

        for node in &ast.nodes {
            let instruction =
                instructions::from_node(node).map_err(|m| ast.error_in(node, m.to_string()))?;
            match instruction {
                Instruction::From {
                    image,
                    name,
                    platform,
                } => {
                    let env = |k: &str| meta_args.get(k).cloned();
                    let expanded = lex
                        .process_word(&image, &env)
                        .map_err(|e| ast.error_in(node, e.to_string()))?;
                    if expanded.is_empty() {
                        return Err(
                            ast.error_in(node, format!("base name ({image}) should not be blank"))
                        );
                    }
                    let platform = match platform {
                        Some(p) => Some(
                            lex.process_word(&p, &env)
                                .map_err(|e| ast.error_in(node, e.to_string()))?,
                        ),
                        None => None,
                    };
                    if let Some(n) = &name {
                        if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(ast.error_in(node, format!("duplicate stage name {n:?}")));
                        }
                    }
                    let lower = expanded.to_ascii_lowercase();
                    let base = if lower == "scratch" {
                        StageBase::Scratch
                    } else if let Some(s) = stages
                        .iter()
                        .find(|s| s.name.as_deref() == Some(lower.as_str()))
                    {
                        StageBase::Stage(s.index)
                    } else {
                        StageBase::Image(expanded)
                    };
                    let mut deps = BTreeSet::new();
                    if let StageBase::Stage(i) = base {
                        deps.insert(i);
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name,
                        base,
                        platform,
                        from: node.clone(),
                        steps: Vec::new(),
                        deps,
                        image_deps: BTreeSet::new(),
                    });
                }
                Instruction::Arg(decls) if stages.is_empty() => {
                    for (k, default) in decls {
                        global_arg_names.insert(k.clone());
                        let value = match options.build_args.get(&k) {
                            Some(v) => Some(v.clone()),
                            None => match default {
                                Some(d) => {
                                    let env = |n: &str| meta_args.get(n).cloned();
                                    Some(
                                        lex.process_word(&d, &env)
                                            .map_err(|e| ast.error_in(node, e.to_string()))?,
                                    )
                                }
                                None => None,
                            },
                        };
                        match value {
                            Some(v) => {
                                meta_args.insert(k, v);
                            }
                            None => {
                                meta_args.remove(&k);
                            }
                        }
                    }
                }
                other => {
                    let Some(stage) = stages.last_mut() else {
                        return Err(ast.error_in(
                            node,
                            format!("{} instruction before the first FROM: only ARG may come before FROM", other.keyword()),
                        ));
                    };
                    stage.steps.push(Step {
                        node: node.clone(),
                        instruction: other,
                        copy_from: None,
                    });
                }
            }
        }
        if stages.is_empty() {
            return Err(ParseError::new(
                &ast.file,
                1,
                1,
                "no build stage in the Dockerfile: it needs a FROM",
                "",
            ));
        }

        // Second pass: references to other stages (may name later stages).
        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        for stage in stages.iter_mut() {
            let mut args_in_scope = meta_args.clone();
            for step in stage.steps.iter_mut() {
                if let Instruction::Arg(decls) = &step.instruction {
                    for (k, d) in decls {
                        let value = match (options.build_args.get(k), d) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(d)) => {
                                let env = |k: &str| args_in_scope.get(k).cloned();
                                Some(
                                    lex.process_word(d, &env)
                                        .map_err(|e| ast.error_in(&step.node, e.to_string()))?,
                                )
                            }
                            (None, None) => None,
                        };
                        if let Some(v) = value {
                            args_in_scope.insert(k.clone(), v);
                        }
                    }
                }
                let (copy_from, mount_froms): (Option<&String>, Vec<&str>) = match &step.instruction
                {
                    Instruction::Copy(c) => (c.from.as_ref(), Vec::new()),
                    Instruction::Run(r) => {
                        (None, r.mounts.iter().filter_map(|m| m.from()).collect())
                    }
                    _ => (None, Vec::new()),
                };
                let resolve = |r: &str| -> Result<CopySource, ParseError> {
                    let env = |k: &str| args_in_scope.get(k).cloned();
                    let r = lex
                        .process_word(r, &env)
                        .map_err(|e| ast.error_in(&step.node, e.to_string()))?;
                    let idx = stage_by_name(&names, &r);
                    match idx {
                        Some(i) if i == stage.index => Err(ast
                            .error_in(&step.node, format!("stage {r:?} cannot copy from itself"))),
                        Some(i) => Ok(CopySource::Stage(i)),
                        None if r.parse::<usize>().is_ok() => {
                            Err(ast.error_in(&step.node, format!("no build stage with index {r}")))
                        }
                        None => Ok(CopySource::Image(r)),
                    }
                };
                let mut sources = Vec::new();
                if let Some(f) = copy_from {
                    let source = resolve(f)?;
                    step.copy_from = Some(source.clone());
                    sources.push(source);
                }
                for f in mount_froms {
                    sources.push(resolve(f)?);
                }
                for source in sources {
                    match source {
                        CopySource::Stage(i) => {
                            stage.deps.insert(i);
                        }
                        CopySource::Image(r) => {
                            stage.image_deps.insert(r);
                        }
                    }
                }
            }
        }

        let target = match &options.target {
            None => stages.len() - 1,
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                    .ok_or_else(|| {
                        let known: Vec<String> =
                            stages.iter().filter_map(|s| s.name.clone()).collect();
                        ParseError::new(
                            &ast.file,
                            1,
                            1,
                            format!(
                                "target stage {t:?} could not be found (stages: {})",
                                known.join(", ")
                            ),
                            "",
                        )
                    })?
            }
        };
        let order = dependency_order(&stages, target, &ast)?;
        Ok(Plan {
            ast,
            stages,
            target,
            order,
            meta_args,
            global_arg_names,
            options,
        })
    }

    /// The stage a `--from` or `FROM` word names: by name
    /// (case-insensitive), else by index.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let names: Vec<Option<String>> = self.stages.iter().map(|s| s.name.clone()).collect();
        stage_by_name(&names, name)
    }

    /// Build args given on the command line that no ARG declares.
    pub fn unused_build_args(&self) -> Vec<String> {
        let mut declared: BTreeSet<&str> =
            self.global_arg_names.iter().map(String::as_str).collect();
        for s in &self.stages {
            for step in &s.steps {
                if let Instruction::Arg(d) = &step.instruction {
                    declared.extend(d.iter().map(|(k, _)| k.as_str()));
                }
            }
        }
        self.options
            .build_args
            .keys()
            // BUILDKIT_* args are the builder's own options (the SBOM's
            // BUILDKIT_SBOM_SCAN_STAGE, ...), read without an ARG.
            .filter(|k| {
                !declared.contains(k.as_str())
                    && !PREDEFINED_PROXY_ARGS.contains(&k.as_str())
                    && !k.starts_with("BUILDKIT_")
            })
            .cloned()
            .collect()
    }
}

/// A stage by name (case-insensitive), else by index.
fn stage_by_name(names: &[Option<String>], name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
        .or_else(|| lower.parse::<usize>().ok().filter(|i| *i < names.len()))
}

fn dependency_order(stages: &[Stage], target: usize, ast: &Ast) -> Result<Vec<usize>, ParseError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[Stage],
        marks: &mut [Mark],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
        ast: &Ast,
    ) -> Result<(), ParseError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|&p| stages[p].label()).collect();
                cycle.push(stages[i].label());
                return Err(ast.error_in(
                    &stages[i].from,
                    format!(
                        "circular dependency between build stages: {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for &d in &stages[i].deps {
            visit(d, stages, marks, order, path, ast)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; stages.len()];
    let mut order = Vec::new();
    visit(target, stages, &mut marks, &mut order, &mut Vec::new(), ast)?;
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, ParseError> {
        let ast = crate::parse("Dockerfile", src)?;
        let o = PlanOptions {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: target.map(str::to_string),
            ..PlanOptions::default()
        };
        Plan::new(ast, o)
    }

    #[test]
    fn global_args_expand_in_from() {
        let p = plan(
            "ARG BASE=alpine\nARG TAG\nFROM ${BASE}:${TAG:-3}\n",
            &[("TAG", "3.19")],
            None,
        )
        .unwrap();
        assert_eq!(p.stages[0].base, StageBase::Image("alpine:3.19".into()));
        let p = plan("FROM busybox:${TARGETARCH}\n", &[], None).unwrap();
        assert_eq!(
            p.stages[0].base,
            StageBase::Image(format!("busybox:{}", Platform::host().arch))
        );
    }

    #[test]
    fn only_needed_stages_in_dependency_order() {
        let src = "FROM scratch AS a\nFROM scratch AS unused\nFROM a AS b\nFROM scratch AS c\nCOPY --from=b /x /x\nCOPY --from=0 /y /y\n";
        let p = plan(src, &[], None).unwrap();
        assert_eq!(p.order, vec![0, 2, 3]);
        let p = plan(src, &[], Some("unused")).unwrap();
        assert_eq!(p.order, vec![1]);
    }

    #[test]
    fn errors_are_located() {
        let e = plan(
            "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /x /x\n",
            &[],
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("circular dependency"), "{e}");
        let e = plan("FROM scratch\n", &[], Some("nope")).unwrap_err();
        assert!(e
            .message
            .contains("target stage \"nope\" could not be found"));
        let e = plan("RUN x\nFROM scratch\n", &[], None).unwrap_err();
        assert_eq!(e.line, 1);
        let e = plan("FROM scratch AS a\nFROM scratch AS A\n", &[], None).unwrap_err();
        assert!(e.message.contains("duplicate stage name"));
    }

    #[test]
    fn unused_build_args_reported() {
        let p = plan(
            "ARG A\nFROM scratch\nARG B\n",
            &[
                ("A", "1"),
                ("B", "2"),
                ("C", "3"),
                ("HTTP_PROXY", "x"),
                ("BUILDKIT_SBOM_SCAN_STAGE", "true"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(p.unused_build_args(), vec!["C"]);
    }
}
