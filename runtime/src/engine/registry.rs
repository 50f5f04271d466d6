//! The deployed programs and their projections, with each projection's position.
//!
//! Invariant: a projection version (`name@vN`) has exactly one definition for the life of
//! a node: deploying the same text again is a no-op, deploying a different one under the
//! same version is refused (deploy it as a new version, which rebuilds beside the old).
//! A retired version stays retired: a program that still names it loads and deploys
//! with that version skipped (a deploy naming nothing but retired versions is refused).
//!
//! A deploy is checked ([`Registry::check`]) and compiled ([`compile_checked`]) with no
//! lock held; only [`Registry::register`], which re-validates against what changed
//! meanwhile and records the program, runs under the engine's write lock. Limits
//! ([`DeployLimits`]) bound the source and each handler; a handler past the JIT's size
//! threshold makes its program run on the interpreter, since Cranelift's compile time
//! grows faster than linearly with function size.

use datamesh_compiler::codes;
use std::collections::HashMap;
use std::sync::Arc;

use datamesh_compiler::check::check_source;
use datamesh_compiler::codegen::{JitProgram, compile};
use datamesh_compiler::diag::Diagnostic;
use datamesh_compiler::ir::{EventType, Field, Program, Stmt, Type};

use super::EngineKind;
use crate::store::{Store, StoreError, keyspace_name};

/// One deployed projection version.
#[derive(Debug, Clone)]
pub struct ProjectionInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// `name@vN`.
    pub label: String,
    /// Its fjall keyspace.
    pub keyspace: String,
    /// Index of its program in [`Registry::programs`].
    pub program: usize,
    /// Index of the projection in that program.
    pub index: usize,
    /// Next log position to apply.
    pub position: u64,
    /// The fault (JSON) that stopped it.
    pub fault: Option<crate::store::Fault>,
    /// It has reached the log head at least once.
    pub caught_up: bool,
    /// When this process began folding it (deployed, loaded or reset), and its
    /// position then: what its catch-up is measured from.
    pub since: (std::time::Instant, u64),
    /// Retired: stopped for good, documents deleted; invisible to reads and lists.
    pub retired: bool,
    /// Key component types.
    pub key: Arc<[Type]>,
    /// State fields.
    pub state: Arc<[Field]>,
    /// Normalised definition text, to recognise re-deploys.
    definition: Arc<str>,
}

/// Bounds on what one deploy may bring, and the size past which the JIT is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployLimits {
    /// Source text, in bytes.
    pub max_source_bytes: usize,
    /// One handler, in IR nodes ([`handler_nodes`]).
    pub max_handler_nodes: usize,
    /// A program with a handler larger than this (IR nodes) runs on the interpreter.
    pub jit_max_handler_nodes: usize,
    /// A program whose handlers total more than this (IR nodes) runs on the
    /// interpreter.
    pub jit_max_program_nodes: usize,
}

impl Default for DeployLimits {
    fn default() -> Self {
        DeployLimits {
            max_source_bytes: 1 << 20,
            max_handler_nodes: MAX_HANDLER_NODES,
            jit_max_handler_nodes: JIT_MAX_HANDLER_NODES,
            jit_max_program_nodes: JIT_MAX_PROGRAM_NODES,
        }
    }
}

/// The largest handler a deploy accepts, in IR nodes (a 1 MiB source of one handler
/// is about 150,000).
pub const MAX_HANDLER_NODES: usize = 100_000;

/// Handlers past this size (IR nodes) are not compiled by the JIT: their program runs
/// on the interpreter. Measured (`measure_compile_time_against_handler_size` in the
/// engine tests, debug build): compile time per node is flat to about 5,000 nodes and
/// bends past it, worst for long-lived `let`s (register pressure): 3,200 nodes 0.7 s,
/// 6,400 nodes 2.1 s, 12,800 nodes 12 s; `if` chains and map updates grow slower
/// (14,400 nodes 6 s, 28,800 nodes 16 s). The threshold sits where the worst curve
/// bends; real handlers are tens to hundreds of nodes.
pub const JIT_MAX_HANDLER_NODES: usize = 8_000;

/// A program whose handlers total more than this (IR nodes) runs on the interpreter:
/// compile time adds up over handlers.
pub const JIT_MAX_PROGRAM_NODES: usize = 40_000;

/// What a deploy did.
#[derive(Debug, Clone, Default)]
pub struct DeployOutcome {
    /// Projection versions started.
    pub started: Vec<String>,
    /// Versions already deployed with the same definition.
    pub unchanged: Vec<String>,
    /// Versions the program names that were retired: skipped, they stay retired.
    pub retired: Vec<String>,
    /// Event types the node did not know before, now declared.
    pub declared: Vec<String>,
    /// Exports no deployed program made before, as `PEER:Type`.
    pub exported: Vec<String>,
    /// Peers whose `import` block this program brings or changes: their links run
    /// this program's block from now on.
    pub imported: Vec<String>,
    /// Warnings.
    pub warnings: Vec<Diagnostic>,
}

impl DeployOutcome {
    /// Nothing to record: no new projection version, event type or export.
    pub fn brings_nothing(&self) -> bool {
        self.started.is_empty()
            && self.declared.is_empty()
            && self.exported.is_empty()
            && self.imported.is_empty()
    }
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The program has errors.
    #[error("the program has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Invalid(Vec<Diagnostic>),
    /// It conflicts with what is deployed.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a promote or retire was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such projection version.
    #[error("{0}")]
    NotFound(String),
    /// The version cannot take this step now.
    #[error("{0}")]
    NotReady(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deployed programs and projections.
#[derive(Debug, Default)]
pub struct Registry {
    /// Programs in deploy order.
    pub programs: Vec<Arc<Program>>,
    /// Projections in deploy order.
    pub projections: Vec<ProjectionInfo>,
    /// Every declared event type (the union of all programs).
    pub schemas: Arc<HashMap<String, EventType>>,
    /// The promoted version of each projection name (reads without a version go there).
    pub promoted: HashMap<String, u32>,
    /// The `import` block in force for each peer: the newest program that has one
    /// (its index in `programs`), and the block's normalised text.
    imports: HashMap<String, (usize, String)>,
    /// Per program (same index as `programs`): its native code, or `None` when the
    /// interpreter runs it (chosen, the JIT could not compile it, or every projection of
    /// it is faulted and its code was freed).
    jit: Vec<Option<JitProgram>>,
}

/// The size of a handler in IR nodes: its statements (nested ones included) and every
/// expression of its key, guard and body. JIT compile time follows it.
pub fn handler_nodes(handler: &datamesh_compiler::ir::Handler) -> usize {
    fn statements(list: &[Stmt]) -> usize {
        list.iter()
            .map(|s| match s {
                Stmt::If {
                    then, otherwise, ..
                } => 1 + statements(then) + statements(otherwise),
                _ => 1,
            })
            .sum()
    }
    let mut n = statements(&handler.body);
    for s in &handler.body {
        // Nested statements' expressions included.
        s.walk_exprs(&mut |_| n += 1);
    }
    for e in handler.key.iter().chain(&handler.guard) {
        e.walk(&mut |_| n += 1);
    }
    n
}

/// A program checked, and compiled for the JIT when it runs it, outside the registry's
/// lock; [`Registry::register`] records it.
pub struct CheckedProgram {
    program: Program,
    warnings: Vec<Diagnostic>,
    texts: HashMap<(String, u32), String>,
    /// The normalised text of each `import` block, by peer.
    import_texts: HashMap<String, String>,
    /// Its handlers' sizes.
    size: Size,
    jit: Option<JitProgram>,
}

impl std::fmt::Debug for CheckedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedProgram")
            .field("size", &self.size)
            .field("jit", &self.jit.is_some())
            .finish_non_exhaustive()
    }
}

/// Compiles a checked program for `kind` (no lock held: this is the slow part of a
/// deploy). A program with a handler past the JIT threshold, or one the JIT cannot
/// compile, runs on the interpreter (with a warning in the node's log).
pub fn compile_checked(
    kind: EngineKind,
    mut checked: CheckedProgram,
    limits: &DeployLimits,
) -> CheckedProgram {
    if kind == EngineKind::Jit && checked.size.fits_jit(&checked.program, limits) {
        checked.jit = jit_for(&checked.program);
    }
    checked
}

/// The JIT's code for a program, or `None` (with a warning) when the JIT cannot
/// compile it.
pub(super) fn jit_for(program: &Program) -> Option<JitProgram> {
    let started = std::time::Instant::now();
    match compile(program) {
        Ok(code) => {
            tracing::debug!(projections = ?labels(program), ms = started.elapsed().as_millis() as u64, "compiled");
            Some(code)
        }
        Err(e) => {
            tracing::warn!(projections = ?labels(program), reason = %e, "the JIT cannot compile this program; its projections run on the interpreter");
            None
        }
    }
}

fn labels(program: &Program) -> Vec<String> {
    (program.projections.iter())
        .map(|p| format!("{}@v{}", p.name, p.version))
        .collect()
}

/// The size of a program's handlers, in IR nodes.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    largest: usize,
    total: usize,
}

impl Size {
    fn of(program: &Program) -> Size {
        let mut size = Size::default();
        for handler in (program.projections.iter())
            .flat_map(|p| &p.handlers)
            .chain(program.imports.iter().flat_map(|i| &i.rules))
        {
            let n = handler_nodes(handler);
            size.largest = size.largest.max(n);
            size.total += n;
        }
        size
    }

    /// Whether the JIT compiles a program of this size; warns when it does not.
    fn fits_jit(self, program: &Program, limits: &DeployLimits) -> bool {
        let fits = self.largest <= limits.jit_max_handler_nodes
            && self.total <= limits.jit_max_program_nodes;
        if !fits {
            tracing::warn!(
                projections = ?labels(program),
                largest_handler_nodes = self.largest,
                handler_threshold = limits.jit_max_handler_nodes,
                total_nodes = self.total,
                program_threshold = limits.jit_max_program_nodes,
                "the program is too large for the JIT to compile in bounded time; it runs on the interpreter"
            );
        }
        fits
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of each projection declaration, by (name, version), and of each import
/// block, by peer.
type Definitions = (HashMap<(String, u32), String>, HashMap<String, String>);

fn definitions(source: &str) -> Definitions {
    let (file, _) = datamesh_compiler::parser::parse(source);
    let mut out = HashMap::new();
    let mut imports = HashMap::new();
    let text_of = |span: datamesh_compiler::ast::Span| {
        normalise(
            source
                .get(span.start as usize..span.end as usize)
                .unwrap_or_default(),
        )
    };
    for item in &file.items {
        if let datamesh_compiler::ast::Item::Import(i) = item {
            imports.insert(i.peer.name.clone(), text_of(i.span));
        }
        if let datamesh_compiler::ast::Item::Projection(p) = item {
            let version = p
                .version
                .as_ref()
                .and_then(|v| v.name.strip_prefix('v')?.parse().ok())
                .unwrap_or(1);
            let text = source
                .get(p.span.start as usize..p.span.end as usize)
                .unwrap_or_default();
            out.insert((p.name.name.clone(), version), normalise(text));
        }
    }
    (out, imports)
}

impl Registry {
    /// Rebuilds the registry from the store's deployments and checkpoints. Nothing is
    /// compiled: every program starts on the interpreter, and the engine compiles those
    /// the JIT runs in the background ([`Registry::install_jit`]), so a restart does not
    /// wait for Cranelift. A program is loaded as it was accepted: limits for new
    /// deploys do not apply, and versions retired since are skipped.
    ///
    /// # Errors
    /// Store errors.
    pub fn load(store: &Store) -> Result<Registry, StoreError> {
        let mut registry = Registry {
            promoted: store.promoted()?,
            ..Registry::default()
        };
        for deployment in store.deployments()? {
            let unbounded = DeployLimits {
                max_source_bytes: usize::MAX,
                max_handler_nodes: usize::MAX,
                ..DeployLimits::default()
            };
            let loaded = Registry::check(&deployment.source, &unbounded).and_then(|checked| {
                let outcome = registry.plan(&checked, true)?;
                registry.add(store, checked, outcome)
            });
            match loaded {
                Ok(outcome) if !outcome.retired.is_empty() => tracing::info!(
                    origin = %deployment.origin,
                    skipped = ?outcome.retired,
                    "a deployed program names retired projection versions: they stay retired, the rest of the program runs"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(origin = %deployment.origin, error = %e, "a deployed program no longer loads")
                }
            }
        }
        Ok(registry)
    }

    /// Checks a program on its own (no registry needed, so no lock): size limits, then
    /// the checker, then the size of each handler.
    ///
    /// # Errors
    /// [`DeployError::Invalid`] with the diagnostics.
    pub fn check(source: &str, limits: &DeployLimits) -> Result<CheckedProgram, DeployError> {
        if source.len() > limits.max_source_bytes {
            return Err(DeployError::Invalid(vec![
                Diagnostic::error(
                    codes::D0001,
                    format!(
                        "the program is {} bytes; a node accepts programs of at most {} bytes",
                        source.len(),
                        limits.max_source_bytes
                    ),
                    datamesh_compiler::ast::Span { start: 0, end: 0 },
                )
                .help("split it into several programs"),
            ]));
        }
        let checked = check_source(source);
        let Some(program) = checked.program else {
            return Err(DeployError::Invalid(checked.diagnostics));
        };
        let mut too_large = Vec::new();
        for handler in (program.projections.iter())
            .flat_map(|p| &p.handlers)
            .chain(program.imports.iter().flat_map(|i| &i.rules))
        {
            let nodes = handler_nodes(handler);
            if nodes > limits.max_handler_nodes {
                too_large.push(
                    Diagnostic::error(
                        codes::D0002,
                        format!(
                            "this handler is {nodes} expressions and statements; a node accepts handlers of at most {}",
                            limits.max_handler_nodes
                        ),
                        handler.span,
                    )
                    .help("split the work over several handlers or projections"),
                );
            }
        }
        if !too_large.is_empty() {
            return Err(DeployError::Invalid(too_large));
        }
        let (texts, import_texts) = definitions(source);
        Ok(CheckedProgram {
            size: Size::of(&program),
            texts,
            import_texts,
            program,
            warnings: checked.diagnostics,
            jit: None,
        })
    }

    /// Records a checked program and registers its new projections, after validating it
    /// again against the registry as it is now (another deploy may have registered
    /// meanwhile). A program that brings nothing new is not recorded again.
    ///
    /// # Errors
    /// [`DeployError`].
    pub fn register(
        &mut self,
        store: &Store,
        source: &str,
        origin: &str,
        checked: CheckedProgram,
    ) -> Result<DeployOutcome, DeployError> {
        let outcome = self.plan(&checked, false)?;
        // A program with nothing new is not recorded again. Event types and exports
        // count: a program that only declares events puts their schemas in force
        // (validation, strict mode), and one that only exports opens the export side
        // to a peer, so each is recorded like one that starts projections.
        if outcome.brings_nothing() {
            return Ok(outcome);
        }
        let seq = store.deployments()?.len() as u64;
        store.add_deployment(seq, origin, source)?;
        self.add(store, checked, outcome)
    }

    /// Checks a program against the deployed ones without changing anything. While
    /// `loading` (replaying accepted deploys at start), retired versions are skipped
    /// whatever they say; a new deploy naming a retired version with another
    /// definition, or naming nothing but retired versions, is refused.
    pub fn plan(
        &self,
        checked: &CheckedProgram,
        loading: bool,
    ) -> Result<DeployOutcome, DeployError> {
        let program = &checked.program;
        for event in &program.events {
            if let Some(existing) = self.schemas.get(&event.name) {
                let same =
                    existing.fields.len() == event.fields.len()
                        && existing.fields.iter().zip(&event.fields).all(|(a, b)| {
                            a.name == b.name && a.ty == b.ty && a.default == b.default
                        });
                if !same {
                    return Err(DeployError::Conflict(format!(
                        "event `{}` is already declared with different fields by a deployed program; every program on a node must declare an event type the same way",
                        event.name
                    )));
                }
            }
        }
        let mut outcome = DeployOutcome {
            warnings: checked.warnings.clone(),
            declared: (program.events.iter())
                .filter(|e| !self.schemas.contains_key(&e.name))
                .map(|e| e.name.clone())
                .collect(),
            ..DeployOutcome::default()
        };
        // An export is new content too: a program that only exports (to a peer, types
        // declared elsewhere) is recorded.
        for export in &program.exports {
            let before =
                crate::mesh::exports_to(self.programs.iter().map(AsRef::as_ref), &export.peer);
            for &event in &export.events {
                if let Some(declared) = program.events.get(event)
                    && !before.contains_key(&declared.name)
                {
                    let pair = format!("{}:{}", export.peer, declared.name);
                    if !outcome.exported.contains(&pair) {
                        outcome.exported.push(pair);
                    }
                }
            }
        }
        // An import block is new content when no program had one for that peer, or
        // when it differs from the one in force: the link runs it from now on.
        for import in &program.imports {
            let text = checked.import_texts.get(&import.peer);
            let current = self.imports.get(&import.peer).map(|(_, t)| t);
            if text != current {
                outcome.imported.push(import.peer.clone());
            }
        }
        for projection in &program.projections {
            let label = format!("{}@v{}", projection.name, projection.version);
            let text = checked
                .texts
                .get(&(projection.name.clone(), projection.version))
                .cloned()
                .unwrap_or_default();
            match self.projections.iter().find(|p| p.label == label) {
                Some(existing) if existing.retired => {
                    if !loading && *existing.definition != *text {
                        return Err(DeployError::Conflict(format!(
                            "projection `{label}` was retired; deploy it as a new version"
                        )));
                    }
                    outcome.retired.push(label);
                }
                Some(existing) if *existing.definition == *text => outcome.unchanged.push(label),
                Some(_) => {
                    return Err(DeployError::Conflict(format!(
                        "projection `{label}` is already deployed with a different definition; deploy the change as a new version (v{})",
                        self.projections
                            .iter()
                            .filter(|p| p.name == projection.name)
                            .map(|p| p.version)
                            .max()
                            .unwrap_or(0)
                            + 1
                    )));
                }
                None => outcome.started.push(label),
            }
        }
        if !loading
            && !outcome.retired.is_empty()
            && outcome.unchanged.is_empty()
            && outcome.brings_nothing()
        {
            return Err(DeployError::Conflict(format!(
                "{} retired; deploy it as a new version",
                match outcome.retired.as_slice() {
                    [one] => format!("projection `{one}` was"),
                    many => format!("projections {} were", many.join(", ")),
                }
            )));
        }
        Ok(outcome)
    }

    /// Registers a planned program: its new projection versions start from their
    /// checkpoints.
    fn add(
        &mut self,
        store: &Store,
        checked: CheckedProgram,
        outcome: DeployOutcome,
    ) -> Result<DeployOutcome, DeployError> {
        let CheckedProgram {
            program,
            texts,
            import_texts,
            jit,
            ..
        } = checked;
        if !outcome.retired.is_empty() {
            tracing::info!(skipped = ?outcome.retired, "the program names retired projection versions: they stay retired");
        }
        let program = Arc::new(program);
        let program_index = self.programs.len();
        for (index, projection) in program.projections.iter().enumerate() {
            let label = format!("{}@v{}", projection.name, projection.version);
            if !outcome.started.contains(&label) {
                continue;
            }
            let fault = store.fault(&label)?;
            let keyspace = keyspace_name(&projection.name, projection.version);
            let position = store.checkpoint(&label)?;
            self.projections.push(ProjectionInfo {
                retired: store.is_retired(&keyspace),
                name: projection.name.clone(),
                version: projection.version,
                keyspace,
                position,
                since: (std::time::Instant::now(), position),
                label,
                program: program_index,
                index,
                fault,
                caught_up: false,
                key: projection.key.clone().into(),
                state: projection.state.clone().into(),
                definition: texts
                    .get(&(projection.name.clone(), projection.version))
                    .cloned()
                    .unwrap_or_default()
                    .into(),
            });
        }
        for event in &program.events {
            Arc::make_mut(&mut self.schemas)
                .entry(event.name.clone())
                .or_insert_with(|| event.clone());
        }
        for peer in &outcome.imported {
            if let Some(text) = import_texts.get(peer) {
                self.imports
                    .insert(peer.clone(), (program_index, text.clone()));
            }
        }
        self.programs.push(program);
        self.jit.push(jit);
        Ok(outcome)
    }

    /// Programs the JIT should compile after a [`Registry::load`]: those with a
    /// projection that can still run and no handler past the threshold (the others
    /// stay on the interpreter, with a warning).
    pub fn to_compile(&self, limits: &DeployLimits) -> Vec<(usize, Arc<Program>)> {
        (self.programs.iter().enumerate())
            .filter(|(index, _)| self.jit(*index).is_none() && self.runs(*index))
            .filter(|(_, program)| Size::of(program).fits_jit(program, limits))
            .map(|(index, program)| (index, program.clone()))
            .collect()
    }

    /// Installs compiled code for program `index` (compiled in the background after
    /// a load), unless none of its projections can run any more. Batches after this
    /// one run it; the interpreter's document tables of its projections are dropped
    /// (they hold only clean documents between batches, so nothing is lost).
    pub fn install_jit(&mut self, index: usize, code: JitProgram) -> bool {
        let runs = self.runs(index);
        match self.jit.get_mut(index) {
            Some(slot @ None) if runs => {
                *slot = Some(code);
                true
            }
            _ => false,
        }
    }

    /// Whether some projection of program `index` can still apply events, or the
    /// program has import rules (a link may run them).
    fn runs(&self, index: usize) -> bool {
        self.programs
            .get(index)
            .is_some_and(|p| !p.imports.is_empty())
            || self
                .projections
                .iter()
                .any(|p| p.program == index && p.fault.is_none() && !p.retired)
    }

    /// The native code of program number `program`, if the JIT runs it.
    pub fn jit(&self, program: usize) -> Option<&JitProgram> {
        self.jit.get(program).and_then(Option::as_ref)
    }

    /// Frees the native code of every program whose projections are all faulted: a
    /// faulted projection never applies another event, so that code can never run
    /// again.
    pub fn release_unused_code(&mut self) {
        for (index, code) in self.jit.iter_mut().enumerate() {
            let imports = self
                .programs
                .get(index)
                .is_some_and(|p| !p.imports.is_empty());
            if code.is_some()
                && !imports
                && self
                    .projections
                    .iter()
                    .filter(|p| p.program == index)
                    .all(|p| p.fault.is_some() || p.retired)
            {
                tracing::debug!(
                    program = index,
                    "freeing the native code of a program whose projections are all faulted"
                );
                *code = None;
            }
        }
    }

    /// The lowest position some non-faulted projection still has to apply, if below
    /// `head`.
    pub fn lowest_pending(&self, head: u64) -> Option<u64> {
        self.projections
            .iter()
            .filter(|p| p.fault.is_none() && !p.retired && p.position < head)
            .map(|p| p.position)
            .min()
    }

    /// A projection's position by label.
    pub fn position(&self, label: &str) -> Option<u64> {
        self.projections
            .iter()
            .find(|p| p.label == label)
            .map(|p| p.position)
    }

    /// Whether a projection is faulted (unknown labels count as faulted).
    pub fn is_faulted(&self, label: &str) -> bool {
        self.projections
            .iter()
            .find(|p| p.label == label)
            .is_none_or(|p| p.fault.is_some() || p.retired)
    }

    /// The version a read addresses: the given one, or the active one — the promoted
    /// version if one was promoted, else the newest version that has caught up with the
    /// log and is not faulted (so a new version rebuilding in the background does not
    /// serve reads until it is complete), else the newest version. Retired versions
    /// are never addressed.
    pub fn resolve(&self, name: &str, version: Option<u32>) -> Option<&ProjectionInfo> {
        let mut versions = self
            .projections
            .iter()
            .filter(|p| p.name == name && !p.retired);
        match version.or_else(|| self.promoted_version(name)) {
            Some(v) => versions.find(|p| p.version == v),
            None => {
                let all: Vec<&ProjectionInfo> = versions.collect();
                all.iter()
                    .filter(|p| p.caught_up && p.fault.is_none())
                    .max_by_key(|p| p.version)
                    .or_else(|| all.iter().max_by_key(|p| p.version))
                    .copied()
            }
        }
    }

    /// The promoted version of `name`, if it was promoted and is still there.
    pub fn promoted_version(&self, name: &str) -> Option<u32> {
        let v = *self.promoted.get(name)?;
        self.projections
            .iter()
            .any(|p| p.name == name && p.version == v && !p.retired)
            .then_some(v)
    }

    /// Promotes a version (see [`Registry::resolve`]).
    ///
    /// # Errors
    /// [`LifecycleError`] when it does not exist or cannot serve yet.
    pub fn promote(
        &mut self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<String, LifecycleError> {
        let p = self.lifecycle_target(name, version)?;
        if let Some(fault) = &p.fault {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is faulted and cannot serve reads ({fault}); deploy a fixed version",
                p.label
            )));
        }
        if !p.caught_up {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is still catching up (at position {}); promote it once it has caught up (see `datamesh status`)",
                p.label, p.position
            )));
        }
        let label = p.label.clone();
        store.promote(name, version)?;
        self.promoted.insert(name.to_owned(), version);
        Ok(label)
    }

    /// Retires a version: it stops for good and its documents are deleted.
    ///
    /// # Errors
    /// [`LifecycleError`] when it does not exist or is the promoted version.
    pub fn retire(
        &mut self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<String, LifecycleError> {
        let p = self.lifecycle_target(name, version)?;
        if self.promoted_version(name) == Some(version) {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is the promoted version; promote another version of `{name}` first",
                p.label
            )));
        }
        let (label, keyspace) = (p.label.clone(), p.keyspace.clone());
        store.retire(&keyspace)?;
        if let Some(p) = self.projections.iter_mut().find(|p| p.label == label) {
            p.retired = true;
        }
        self.release_unused_code();
        Ok(label)
    }

    fn lifecycle_target(
        &self,
        name: &str,
        version: u32,
    ) -> Result<&ProjectionInfo, LifecycleError> {
        self.projections
            .iter()
            .find(|p| p.name == name && p.version == version && !p.retired)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .projections
                    .iter()
                    .filter(|p| p.name == name && !p.retired)
                    .map(|p| format!("v{}", p.version))
                    .collect();
                LifecycleError::NotFound(if known.is_empty() {
                    format!("no projection `{name}` is deployed")
                } else {
                    format!(
                        "`{name}` has no version {version} (deployed: {})",
                        known.join(", ")
                    )
                })
            })
    }

    /// The import block in force for each peer: the program that has it (its index
    /// and the program) and the block's index in it.
    pub fn imports(&self) -> Vec<(String, usize, Arc<Program>, usize)> {
        let mut out: Vec<_> = self
            .imports
            .iter()
            .filter_map(|(peer, &(index, _))| {
                let program = self.programs.get(index)?;
                let block = program.imports.iter().position(|i| &i.peer == peer)?;
                Some((peer.clone(), index, program.clone(), block))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `info` is the version reads go to by default.
    pub fn is_active(&self, info: &ProjectionInfo) -> bool {
        self.resolve(&info.name, None)
            .is_some_and(|p| p.label == info.label)
    }
}
