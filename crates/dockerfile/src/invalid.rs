//! What makes an instruction invalid, with BuildKit's messages (its
//! parser and `instructions/parse.go`). The parser and the plan add the
//! file, line and column (`ParseError`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("{0} requires at least one argument")]
    NeedsArgument(String),
    #[error("{instruction} requires at least {min} arguments, but only {given} provided")]
    NeedsArguments {
        instruction: String,
        min: usize,
        given: usize,
    },
    #[error("unknown flag: --{flag} (for {instruction})")]
    UnknownFlag { flag: String, instruction: String },
    #[error("duplicate flag specified: --{0}")]
    DuplicateFlag(String),
    #[error("missing a value on flag: --{0}")]
    FlagWithoutValue(String),
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    NotBool { flag: String, value: String },
    #[error("{0} must have two arguments")]
    NeedsTwoArguments(String),
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    NoEquals(String),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("quoted heredoc quotes do not match")]
    HeredocQuotes,
    #[error("time: invalid duration {0:?}")]
    Duration(String),
    #[error("--{flag}: time: invalid duration {value:?}")]
    DurationFlag { flag: String, value: String },
    #[error("Interval {0:?} cannot be less than 1ms")]
    IntervalTooShort(String),
    #[error("--retries: invalid number {0:?}")]
    Retries(String),
    #[error("--retries cannot be negative")]
    NegativeRetries,
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("HEALTHCHECK NONE takes no flags")]
    HealthcheckNoneFlags,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckNoCommand,
    #[error("HEALTHCHECK requires an argument (CMD or NONE)")]
    HealthcheckNoType,
    #[error("Unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    #[error("FROM requires either one or three arguments")]
    FromOneOrThree,
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("ARG names can not be blank: {0:?}")]
    BlankArg(String),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("unsupported mount type {0:?}")]
    MountType(String),
    #[error("RUN --network={0}: expected default, none or host")]
    Network(String),
    #[error("RUN --security={0}: expected sandbox or insecure")]
    Security(String),
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    Platform(String),
}
