//! Lowering of the typed IR to Cranelift IR, one handler (or key function) at a time.
//!
//! Every IR value becomes one or two Cranelift values according to its [`Repr`]
//! (`JV`); control-flow merges (`if` expressions, `??`, `and`/`or`) pass values through
//! block parameters. Integer arithmetic is checked inline and branches to a cold block
//! that asks a helper for the exact trap the interpreter reports; everything that needs
//! a `Value` (strings, collections, stdlib calls) goes through the helpers of
//! [`super::abi`].
//!
//! Invariant: the generated code evaluates expressions and statements in exactly the
//! interpreter's order, so the first trap is the same trap, with the same span.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, AbiParam, BlockArg, FuncRef, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, types,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};
use datamesh_stdlib::Value;

use super::CodegenError;
use super::abi::{self, Arg, int_op};
use super::layout::{Layout, Repr, Slot, int_tag};
use crate::ast::{BinaryOp, Span, UnaryOp};
use crate::ir::{Builtin, Expr, ExprKind, Handler, MetaField, Mutation, Place, Stmt, Type};

type R<T> = Result<T, CodegenError>;

/// Size in bytes of a `Value`, the stride of a document's heap array.
const VALUE_SIZE: i64 = std::mem::size_of::<Value>() as i64;

/// Values and spans that compiled code refers to by address or index; owned by the
/// compiled program so they outlive every call.
#[derive(Debug, Default)]
pub struct Pool {
    /// Constant values (strings, collections, zero values).
    pub values: Vec<Box<Value>>,
    /// Spans of trapping expressions, indexed by the number passed to helpers.
    pub spans: Vec<Span>,
}

impl Pool {
    fn value(&mut self, v: Value) -> i64 {
        self.values.push(Box::new(v));
        self.values
            .last()
            .map_or(0, |b| std::ptr::from_ref::<Value>(b) as i64)
    }

    fn span(&mut self, span: Span) -> i64 {
        self.spans.push(span);
        i64::try_from(self.spans.len() - 1).unwrap_or(0)
    }
}

/// The helpers declared in the module, by symbol.
#[derive(Debug, Default)]
pub struct Shims {
    /// Declared function and parameter/return types.
    pub ids: HashMap<&'static str, FuncId>,
}

/// A value in generated code: one Cranelift value, or flag and payload for an optional
/// scalar.
#[derive(Debug, Clone, Copy)]
struct JV {
    a: ir::Value,
    b: Option<ir::Value>,
}

impl JV {
    fn one(a: ir::Value) -> JV {
        JV { a, b: None }
    }

    fn payload(self) -> ir::Value {
        self.b.unwrap_or(self.a)
    }

    fn parts(self) -> Vec<ir::Value> {
        match self.b {
            Some(b) => vec![self.a, b],
            None => vec![self.a],
        }
    }
}

/// The Cranelift types of a representation.
fn clif_types(repr: Repr) -> Vec<ir::Type> {
    match repr {
        Repr::Int | Repr::Ref => vec![types::I64],
        Repr::Float => vec![types::F64],
        Repr::Bool => vec![types::I8],
        Repr::OptInt => vec![types::I8, types::I64],
        Repr::OptFloat => vec![types::I8, types::F64],
        Repr::OptBool => vec![types::I8, types::I8],
    }
}

/// What a statement list did to control flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Execution continues in the current block.
    Open,
    /// The current block ended (a `delete` returned).
    Closed,
}

/// What the translated function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The key components of a handler, into `ctx.key`.
    Key,
    /// Guard and body.
    Body,
}

/// Translates one function.
pub struct Translator<'a, 'f> {
    b: FunctionBuilder<'f>,
    module: &'a mut JITModule,
    shims: &'a Shims,
    refs: HashMap<&'static str, FuncRef>,
    pool: &'a mut Pool,
    row: &'a Layout,
    doc: Option<&'a Layout>,
    locals: Vec<Vec<Variable>>,
    local_types: Vec<Type>,
    params: [ir::Value; 4],
    heap: ir::Value,
    trap_block: ir::Block,
}

impl std::fmt::Debug for Translator<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Translator")
    }
}

/// The signature every compiled handler and key function has (see [`abi::HandlerFn`]).
pub fn handler_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

fn arg_type(a: Arg) -> ir::Type {
    match a {
        Arg::I64 => types::I64,
        Arg::I32 => types::I32,
        Arg::I8 => types::I8,
        Arg::F64 => types::F64,
    }
}

/// Declares every helper as an imported function of the module.
pub fn declare_shims(module: &mut JITModule) -> R<Shims> {
    let mut shims = Shims::default();
    for shim in abi::shims() {
        let mut sig = module.make_signature();
        for p in shim.params {
            sig.params.push(AbiParam::new(arg_type(*p)));
        }
        if let Some(r) = shim.ret {
            sig.returns.push(AbiParam::new(arg_type(r)));
        }
        let id = module
            .declare_function(shim.name, cranelift_module::Linkage::Import, &sig)
            .map_err(|e| CodegenError::Backend(e.to_string()))?;
        shims.ids.insert(shim.name, id);
    }
    Ok(shims)
}

impl<'a, 'f> Translator<'a, 'f> {
    /// Starts a function: entry block with the four ABI parameters, the shared trap
    /// exit, and one variable per local slot.
    pub fn new(
        mut b: FunctionBuilder<'f>,
        module: &'a mut JITModule,
        shims: &'a Shims,
        pool: &'a mut Pool,
        row: &'a Layout,
        doc: Option<&'a Layout>,
        locals: &[Type],
    ) -> R<Translator<'a, 'f>> {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let params = [p[0], p[1], p[2], p[3]];
        // The heap pointer of the document is loaded once: helpers never move the heap
        // array during a call.
        let heap = b.ins().load(
            types::I64,
            MemFlagsData::trusted(),
            params[3],
            abi::CTX_HEAP,
        );
        let trap_block = b.create_block();
        b.set_cold_block(trap_block);
        let mut t = Translator {
            b,
            module,
            shims,
            refs: HashMap::new(),
            pool,
            row,
            doc,
            locals: Vec::new(),
            local_types: locals.to_vec(),
            params,
            heap,
            trap_block,
        };
        for ty in locals {
            let repr = Repr::of(ty).or_else(|_| Repr::of(&Type::None))?;
            let mut vars = Vec::new();
            for cty in clif_types(repr) {
                let var = t.b.declare_var(cty);
                let zero = t.zero_of(cty);
                t.b.def_var(var, zero);
                vars.push(var);
            }
            t.locals.push(vars);
        }
        Ok(t)
    }

    /// Translates a handler's key expressions into stores to `ctx.key`.
    pub fn translate_key(mut self, handler: &Handler) -> R<()> {
        let key = self.b.ins().load(
            types::I64,
            MemFlagsData::trusted(),
            self.params[3],
            abi::CTX_KEY,
        );
        for (i, expr) in handler.key.iter().enumerate() {
            let v = self.translate_expr(expr)?;
            let word = match Repr::of(&expr.ty)? {
                Repr::Bool => self.b.ins().uextend(types::I64, v.a),
                Repr::Int | Repr::Ref => v.a,
                _ => return Err(CodegenError::Unsupported("a key of this type".into())),
            };
            let offset = i32::try_from(i * 8)
                .map_err(|_| CodegenError::Unsupported("a key this long".into()))?;
            self.b
                .ins()
                .store(MemFlagsData::trusted(), word, key, offset);
        }
        self.finish(abi::STATUS_OK)
    }

    /// Translates guard and body.
    pub fn translate_body(mut self, handler: &Handler) -> R<()> {
        if let Some(guard) = &handler.guard {
            let cond = self.translate_expr(guard)?;
            let body = self.b.create_block();
            let skip = self.b.create_block();
            self.b.ins().brif(cond.a, body, &[], skip, &[]);
            self.b.switch_to_block(skip);
            self.ret(abi::STATUS_SKIP);
            self.b.switch_to_block(body);
        }
        match self.translate_block(&handler.body)? {
            Flow::Open => self.finish(abi::STATUS_OK),
            Flow::Closed => self.finish_closed(),
        }
    }

    fn ret(&mut self, status: u32) {
        let v = self.b.ins().iconst(types::I32, i64::from(status));
        self.b.ins().return_(&[v]);
    }

    fn finish(mut self, status: u32) -> R<()> {
        self.ret(status);
        self.finish_closed()
    }

    fn finish_closed(mut self) -> R<()> {
        self.b.switch_to_block(self.trap_block);
        self.ret(abi::STATUS_TRAP);
        self.b.seal_all_blocks();
        let config = self.module.isa().frontend_config();
        self.b.finalize(config);
        Ok(())
    }

    fn zero_of(&mut self, ty: ir::Type) -> ir::Value {
        if ty == types::F64 {
            self.b.ins().f64const(0.0)
        } else {
            self.b.ins().iconst(ty, 0)
        }
    }

    // ---- helpers calls -------------------------------------------------------------

    fn shim(&mut self, name: &'static str) -> R<FuncRef> {
        if let Some(r) = self.refs.get(name) {
            return Ok(*r);
        }
        let id = *self
            .shims
            .ids
            .get(name)
            .ok_or_else(|| CodegenError::Backend(format!("helper {name} is not declared")))?;
        // The helper must be imported into this function before it can be called.
        let r = self.module.declare_func_in_func(id, self.b.func);
        self.refs.insert(name, r);
        Ok(r)
    }

    fn call(&mut self, name: &'static str, args: &[ir::Value]) -> R<Option<ir::Value>> {
        let f = self.shim(name)?;
        let inst = self.b.ins().call(f, args);
        Ok(self.b.inst_results(inst).first().copied())
    }

    fn call1(&mut self, name: &'static str, args: &[ir::Value]) -> R<ir::Value> {
        self.call(name, args)?
            .ok_or_else(|| CodegenError::Backend(format!("helper {name} returns nothing")))
    }

    fn ctx(&self) -> ir::Value {
        self.params[3]
    }

    fn i32c(&mut self, v: i64) -> ir::Value {
        self.b.ins().iconst(types::I32, v)
    }

    fn i64c(&mut self, v: i64) -> ir::Value {
        self.b.ins().iconst(types::I64, v)
    }

    fn i8c(&mut self, v: i64) -> ir::Value {
        self.b.ins().iconst(types::I8, v)
    }

    /// Branches to the trap exit when a helper recorded a trap.
    fn check_trapped(&mut self) {
        let flag = self.b.ins().load(
            types::I64,
            MemFlagsData::trusted(),
            self.params[3],
            abi::CTX_TRAPPED,
        );
        let cont = self.b.create_block();
        self.b.ins().brif(flag, self.trap_block, &[], cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// When `failed` is true, records the integer trap `code` (computed by the helper
    /// from the operands) in a cold block and leaves the function.
    fn trap_if(
        &mut self,
        failed: ir::Value,
        code: i32,
        a: ir::Value,
        b: ir::Value,
        span: Span,
    ) -> R<()> {
        let slow = self.b.create_block();
        let cont = self.b.create_block();
        // Traps are rare: keeping the slow path out of line keeps the fast path dense.
        self.b.set_cold_block(slow);
        self.b.ins().brif(failed, slow, &[], cont, &[]);
        self.b.switch_to_block(slow);
        let code = self.i32c(i64::from(code));
        let span = self.pool.span(span);
        let span = self.i32c(span);
        let ctx = self.ctx();
        self.call("dm_trap_int", &[ctx, code, a, b, span])?;
        self.b.ins().jump(self.trap_block, &[]);
        self.b.switch_to_block(cont);
        Ok(())
    }

    fn trap_float_if(
        &mut self,
        failed: ir::Value,
        code: i32,
        a: ir::Value,
        b: ir::Value,
        span: Span,
    ) -> R<()> {
        let slow = self.b.create_block();
        let cont = self.b.create_block();
        self.b.set_cold_block(slow);
        self.b.ins().brif(failed, slow, &[], cont, &[]);
        self.b.switch_to_block(slow);
        let code = self.i32c(i64::from(code));
        let span = self.pool.span(span);
        let span = self.i32c(span);
        let ctx = self.ctx();
        self.call("dm_trap_float", &[ctx, code, a, b, span])?;
        self.b.ins().jump(self.trap_block, &[]);
        self.b.switch_to_block(cont);
        Ok(())
    }

    // ---- Value conversions -----------------------------------------------------------

    /// A pointer to a `Value` holding `v` (boxed in the arena for scalars).
    fn boxed(&mut self, v: JV, ty: &Type) -> R<ir::Value> {
        let ctx = self.ctx();
        Ok(match Repr::of(ty)? {
            Repr::Ref => v.a,
            Repr::Int => {
                let tag = self.i64c(int_tag(ty));
                let one = self.i8c(1);
                self.call1("dm_box_int", &[ctx, tag, one, v.a])?
            }
            Repr::Float => {
                let one = self.i8c(1);
                self.call1("dm_box_float", &[ctx, one, v.a])?
            }
            Repr::Bool => {
                let one = self.i8c(1);
                self.call1("dm_box_bool", &[ctx, one, v.a])?
            }
            Repr::OptInt => {
                let tag = self.i64c(int_tag(ty));
                self.call1("dm_box_int", &[ctx, tag, v.a, v.payload()])?
            }
            Repr::OptFloat => self.call1("dm_box_float", &[ctx, v.a, v.payload()])?,
            Repr::OptBool => self.call1("dm_box_bool", &[ctx, v.a, v.payload()])?,
        })
    }

    /// Reads a `Value` pointer as a value of static type `ty`.
    fn unboxed(&mut self, p: ir::Value, ty: &Type) -> R<JV> {
        Ok(match Repr::of(ty)? {
            Repr::Ref => JV::one(p),
            Repr::Int => JV::one(self.call1("dm_as_int", &[p])?),
            Repr::Float => JV::one(self.call1("dm_as_float", &[p])?),
            Repr::Bool => JV::one(self.call1("dm_as_bool", &[p])?),
            Repr::OptInt => {
                let flag = self.call1("dm_is_some", &[p])?;
                let x = self.call1("dm_as_int", &[p])?;
                JV {
                    a: flag,
                    b: Some(x),
                }
            }
            Repr::OptFloat => {
                let flag = self.call1("dm_is_some", &[p])?;
                let x = self.call1("dm_as_float", &[p])?;
                JV {
                    a: flag,
                    b: Some(x),
                }
            }
            Repr::OptBool => {
                let flag = self.call1("dm_is_some", &[p])?;
                let x = self.call1("dm_as_bool", &[p])?;
                JV {
                    a: flag,
                    b: Some(x),
                }
            }
        })
    }

    fn zero_jv(&mut self, repr: Repr) -> JV {
        let parts: Vec<ir::Value> = clif_types(repr)
            .into_iter()
            .map(|t| self.zero_of(t))
            .collect();
        JV {
            a: parts[0],
            b: parts.get(1).copied(),
        }
    }

    /// Converts a value of type `from` to the representation of `to` (`none` and plain
    /// scalars into optionals).
    fn coerce(&mut self, v: JV, from: &Type, to: &Type) -> R<JV> {
        let (rf, rt) = (Repr::of(from)?, Repr::of(to)?);
        if *from == Type::None {
            return Ok(match rt {
                Repr::Ref => v,
                _ => self.zero_jv(rt),
            });
        }
        if rf == rt {
            return Ok(v);
        }
        let lifted = matches!(
            (rf, rt),
            (Repr::Int, Repr::OptInt) | (Repr::Float, Repr::OptFloat) | (Repr::Bool, Repr::OptBool)
        );
        if lifted {
            let one = self.i8c(1);
            return Ok(JV {
                a: one,
                b: Some(v.a),
            });
        }
        let p = self.boxed(v, from)?;
        self.unboxed(p, to)
    }

    // ---- expressions -----------------------------------------------------------------

    fn translate_expr(&mut self, expr: &Expr) -> R<JV> {
        match &expr.kind {
            ExprKind::Const(v) => self.translate_const(v, &expr.ty),
            ExprKind::EventField(i) => self.translate_event_field(*i),
            ExprKind::Meta(m) => Ok(self.translate_meta(*m)),
            ExprKind::State(i) => self.translate_state(*i),
            ExprKind::Local(slot) => self.translate_local(*slot),
            ExprKind::Unary(op, inner) => self.translate_unary(*op, inner, expr.span),
            ExprKind::Binary(BinaryOp::And, a, b) => self.translate_logic(true, a, b),
            ExprKind::Binary(BinaryOp::Or, a, b) => self.translate_logic(false, a, b),
            ExprKind::Binary(BinaryOp::Coalesce, a, b) => self.translate_coalesce(a, b, &expr.ty),
            ExprKind::Binary(op, a, b) => {
                let x = self.translate_expr(a)?;
                let y = self.translate_expr(b)?;
                self.translate_binary(*op, x, &a.ty, y, &b.ty, expr.span)
            }
            ExprKind::If(c, a, b) => self.translate_if_expr(c, a, b, &expr.ty),
            ExprKind::Call(f, args) => self.translate_call(*f, args, expr),
            ExprKind::Index(base, index) => self.translate_index(base, index, expr),
            ExprKind::List(items) => self.translate_list(items),
            // Handler IR reads nothing but the event, the state and locals: a test's
            // document reads are another type.
            ExprKind::Read(never) => match *never {},
        }
    }

    fn translate_const(&mut self, v: &Value, ty: &Type) -> R<JV> {
        let repr = Repr::of(ty)?;
        let payload = |t: &mut Self, v: &Value| -> ir::Value {
            match v {
                Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => t.i64c(*i),
                Value::Float(f) => t.b.ins().f64const(*f),
                Value::Bool(x) => t.i8c(i64::from(*x)),
                _ => t.i64c(0),
            }
        };
        Ok(match repr {
            Repr::Ref => {
                let addr = self.pool.value(v.clone());
                // The constant lives in the compiled program's pool, which outlives the
                // code, so its address can be baked in.
                JV::one(self.i64c(addr))
            }
            Repr::Int | Repr::Float | Repr::Bool => JV::one(payload(self, v)),
            _ if matches!(v, Value::None) => self.zero_jv(repr),
            _ => {
                let one = self.i8c(1);
                JV {
                    a: one,
                    b: Some(payload(self, v)),
                }
            }
        })
    }

    fn load_slot(&mut self, base: ir::Value, slot: Slot) -> R<JV> {
        let flags = MemFlagsData::trusted();
        Ok(match slot {
            Slot::Heap { index } => {
                let offset = i64::try_from(index).unwrap_or(0) * VALUE_SIZE;
                JV::one(self.b.ins().iadd_imm_s(self.heap, offset))
            }
            Slot::Inline { offset, repr } => {
                let tys = clif_types(repr);
                let a = self.b.ins().load(tys[0], flags, base, offset);
                let b = match tys.get(1) {
                    Some(t) => Some(self.b.ins().load(*t, flags, base, offset + 8)),
                    None => None,
                };
                JV { a, b }
            }
        })
    }

    fn store_slot(&mut self, v: JV, slot: Slot) -> R<()> {
        let flags = MemFlagsData::trusted();
        let doc = self.params[0];
        match slot {
            Slot::Heap { index } => {
                let offset = i64::try_from(index).unwrap_or(0) * VALUE_SIZE;
                let dst = self.b.ins().iadd_imm_s(self.heap, offset);
                let ctx = self.ctx();
                self.call("dm_assign", &[ctx, dst, v.a])?;
            }
            Slot::Inline { offset, .. } => {
                self.b.ins().store(flags, v.a, doc, offset);
                if let Some(b) = v.b {
                    self.b.ins().store(flags, b, doc, offset + 8);
                }
            }
        }
        Ok(())
    }

    fn translate_event_field(&mut self, i: usize) -> R<JV> {
        let slot = *self
            .row
            .slots
            .get(i)
            .ok_or_else(|| CodegenError::Backend(format!("no event field {i}")))?;
        let row = self.params[1];
        self.load_slot(row, slot)
    }

    fn translate_meta(&mut self, m: MetaField) -> JV {
        let offset = match m {
            MetaField::Position => abi::META_POSITION,
            MetaField::Time => abi::META_TIME,
            MetaField::Stream => abi::META_STREAM,
            MetaField::Type => abi::META_TYPE,
            MetaField::Id => abi::META_ID,
        };
        JV::one(
            self.b
                .ins()
                .load(types::I64, MemFlagsData::trusted(), self.params[2], offset),
        )
    }

    fn state_slot(&self, i: usize) -> R<(Slot, Type)> {
        let doc = self
            .doc
            .ok_or_else(|| CodegenError::Unsupported("state outside a projection".into()))?;
        match (doc.slots.get(i), doc.types.get(i)) {
            (Some(s), Some(t)) => Ok((*s, t.clone())),
            _ => Err(CodegenError::Backend(format!("no state field {i}"))),
        }
    }

    fn translate_state(&mut self, i: usize) -> R<JV> {
        let (slot, _) = self.state_slot(i)?;
        let doc = self.params[0];
        self.load_slot(doc, slot)
    }

    fn translate_local(&mut self, slot: usize) -> R<JV> {
        let vars = self
            .locals
            .get(slot)
            .cloned()
            .ok_or_else(|| CodegenError::Backend(format!("no local slot {slot}")))?;
        let a = self.b.use_var(vars[0]);
        let b = vars.get(1).map(|v| self.b.use_var(*v));
        Ok(JV { a, b })
    }

    fn translate_unary(&mut self, op: UnaryOp, inner: &Expr, span: Span) -> R<JV> {
        let v = self.translate_expr(inner)?;
        match (op, &inner.ty) {
            (UnaryOp::Not, Type::Bool) => Ok(JV::one(self.b.ins().bxor_imm_s(v.a, 1))),
            (UnaryOp::Neg, Type::Float) => Ok(JV::one(self.b.ins().fneg(v.a))),
            (UnaryOp::Neg, Type::Int | Type::Duration) => {
                let code = if inner.ty == Type::Int {
                    int_op::NEG
                } else {
                    int_op::NEG_DURATION
                };
                let is_min = self.b.ins().icmp_imm_s(IntCC::Equal, v.a, i64::MIN);
                let zero = self.i64c(0);
                self.trap_if(is_min, code, v.a, zero, span)?;
                Ok(JV::one(self.b.ins().ineg(v.a)))
            }
            _ => Err(CodegenError::Unsupported(format!(
                "unary operator on `{}`",
                inner.ty
            ))),
        }
    }

    /// `and` / `or`: the right operand runs only when the left does not decide.
    fn translate_logic(&mut self, is_and: bool, a: &Expr, b: &Expr) -> R<JV> {
        let x = self.translate_expr(a)?;
        let rhs = self.b.create_block();
        let done = self.b.create_block();
        let result = self.b.append_block_param(done, types::I8);
        let args = [BlockArg::Value(x.a)];
        if is_and {
            self.b.ins().brif(x.a, rhs, &[], done, &args);
        } else {
            self.b.ins().brif(x.a, done, &args, rhs, &[]);
        }
        self.b.switch_to_block(rhs);
        let y = self.translate_expr(b)?;
        self.b.ins().jump(done, &[BlockArg::Value(y.a)]);
        self.b.switch_to_block(done);
        Ok(JV::one(result))
    }

    fn merge_block(&mut self, ty: &Type) -> R<(ir::Block, JV)> {
        let done = self.b.create_block();
        let params: Vec<ir::Value> = clif_types(Repr::of(ty)?)
            .into_iter()
            .map(|t| self.b.append_block_param(done, t))
            .collect();
        Ok((
            done,
            JV {
                a: params[0],
                b: params.get(1).copied(),
            },
        ))
    }

    fn jump_with(&mut self, block: ir::Block, v: JV) {
        let args: Vec<BlockArg> = v.parts().into_iter().map(BlockArg::Value).collect();
        self.b.ins().jump(block, &args);
    }

    /// `a ?? b`: `b` runs only when `a` is none.
    fn translate_coalesce(&mut self, a: &Expr, b: &Expr, ty: &Type) -> R<JV> {
        let x = self.translate_expr(a)?;
        let present = match Repr::of(&a.ty)? {
            Repr::Ref => self.call1("dm_is_some", &[x.a])?,
            r if r.is_optional_scalar() => x.a,
            _ => self.i8c(1),
        };
        let some = self.b.create_block();
        let none = self.b.create_block();
        let (done, result) = self.merge_block(ty)?;
        self.b.ins().brif(present, some, &[], none, &[]);
        self.b.switch_to_block(some);
        let unwrapped = self.unwrap_to(x, &a.ty, ty)?;
        self.jump_with(done, unwrapped);
        self.b.switch_to_block(none);
        let y = self.translate_expr(b)?;
        let y = self.coerce(y, &b.ty, ty)?;
        self.jump_with(done, y);
        self.b.switch_to_block(done);
        Ok(result)
    }

    /// The present value of an optional, in the representation of `to`.
    fn unwrap_to(&mut self, v: JV, from: &Type, to: &Type) -> R<JV> {
        let (rf, rt) = (Repr::of(from)?, Repr::of(to)?);
        if rf.is_optional_scalar() && !rt.is_optional_scalar() && rt != Repr::Ref {
            return Ok(JV::one(v.payload()));
        }
        if *from == Type::None && rt != Repr::Ref {
            return Ok(self.zero_jv(rt));
        }
        if rf == Repr::Ref && rt != Repr::Ref {
            return self.unboxed(v.a, to);
        }
        self.coerce(v, from, to)
    }

    fn translate_if_expr(&mut self, c: &Expr, a: &Expr, b: &Expr, ty: &Type) -> R<JV> {
        let cond = self.translate_expr(c)?;
        let then = self.b.create_block();
        let other = self.b.create_block();
        let (done, result) = self.merge_block(ty)?;
        self.b.ins().brif(cond.a, then, &[], other, &[]);
        self.b.switch_to_block(then);
        let x = self.translate_expr(a)?;
        let x = self.coerce(x, &a.ty, ty)?;
        self.jump_with(done, x);
        self.b.switch_to_block(other);
        let y = self.translate_expr(b)?;
        let y = self.coerce(y, &b.ty, ty)?;
        self.jump_with(done, y);
        self.b.switch_to_block(done);
        Ok(result)
    }

    /// Arithmetic and comparison on two evaluated operands, dispatched on static types
    /// exactly as the interpreter's `binary_values` dispatches on values.
    fn translate_binary(
        &mut self,
        op: BinaryOp,
        x: JV,
        tx: &Type,
        y: JV,
        ty: &Type,
        span: Span,
    ) -> R<JV> {
        use Type as T;
        match op {
            BinaryOp::Eq | BinaryOp::Ne => {
                self.translate_equality(op == BinaryOp::Eq, x, tx, y, ty)
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                self.translate_order(op, x, tx, y, ty)
            }
            _ => match (tx, ty) {
                (T::Int, T::Int) => self.translate_int_arith(op, x.a, y.a, span),
                (T::Float, T::Float) => self.translate_float_arith(op, x.a, y.a, span),
                (T::String, T::String) if op == BinaryOp::Add => {
                    let ctx = self.ctx();
                    let s = self.pool.span(span);
                    let s = self.i32c(s);
                    let r = self.call1("dm_concat", &[ctx, x.a, y.a, s])?;
                    self.check_trapped();
                    Ok(JV::one(r))
                }
                _ => self.translate_time_arith(op, x.a, tx, y.a, ty, span),
            },
        }
    }

    fn translate_equality(&mut self, eq: bool, x: JV, tx: &Type, y: JV, ty: &Type) -> R<JV> {
        let same_scalar = tx == ty
            && matches!(
                tx,
                Type::Int | Type::Timestamp | Type::Duration | Type::Bool
            );
        let cc = if eq { IntCC::Equal } else { IntCC::NotEqual };
        if same_scalar {
            return Ok(JV::one(self.b.ins().icmp(cc, x.a, y.a)));
        }
        if *tx == Type::Float && *ty == Type::Float {
            let fc = if eq {
                FloatCC::Equal
            } else {
                FloatCC::NotEqual
            };
            return Ok(JV::one(self.b.ins().fcmp(fc, x.a, y.a)));
        }
        let p = self.boxed(x, tx)?;
        let q = self.boxed(y, ty)?;
        let r = self.call1("dm_value_eq", &[p, q])?;
        Ok(JV::one(if eq { r } else { self.b.ins().bxor_imm_s(r, 1) }))
    }

    fn translate_order(&mut self, op: BinaryOp, x: JV, tx: &Type, y: JV, ty: &Type) -> R<JV> {
        let (icc, fcc) = match op {
            BinaryOp::Lt => (IntCC::SignedLessThan, FloatCC::LessThan),
            BinaryOp::Le => (IntCC::SignedLessThanOrEqual, FloatCC::LessThanOrEqual),
            BinaryOp::Gt => (IntCC::SignedGreaterThan, FloatCC::GreaterThan),
            _ => (IntCC::SignedGreaterThanOrEqual, FloatCC::GreaterThanOrEqual),
        };
        let ints = tx == ty && matches!(tx, Type::Int | Type::Timestamp | Type::Duration);
        if ints {
            return Ok(JV::one(self.b.ins().icmp(icc, x.a, y.a)));
        }
        if *tx == Type::Float && *ty == Type::Float {
            return Ok(JV::one(self.b.ins().fcmp(fcc, x.a, y.a)));
        }
        let p = self.boxed(x, tx)?;
        let q = self.boxed(y, ty)?;
        let ord = self.call1("dm_value_cmp", &[p, q])?;
        Ok(JV::one(self.b.ins().icmp_imm_s(icc, ord, 0)))
    }

    fn translate_int_arith(
        &mut self,
        op: BinaryOp,
        a: ir::Value,
        b: ir::Value,
        span: Span,
    ) -> R<JV> {
        let (r, failed, code) = match op {
            BinaryOp::Add => {
                // The overflow flag comes with the sum: no separate comparison needed.
                let (r, of) = self.b.ins().sadd_overflow(a, b);
                (Some(r), of, int_op::ADD)
            }
            BinaryOp::Sub => {
                let (r, of) = self.b.ins().ssub_overflow(a, b);
                (Some(r), of, int_op::SUB)
            }
            BinaryOp::Mul => {
                let (r, of) = self.b.ins().smul_overflow(a, b);
                (Some(r), of, int_op::MUL)
            }
            BinaryOp::Div | BinaryOp::Rem => {
                let code = if op == BinaryOp::Div {
                    int_op::DIV
                } else {
                    int_op::REM
                };
                (None, self.division_fails(a, b), code)
            }
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` on ints",
                    op.symbol()
                )));
            }
        };
        self.trap_if(failed, code, a, b, span)?;
        Ok(JV::one(match (r, op) {
            (Some(r), _) => r,
            // Both operands were checked above, so the hardware division cannot fault.
            (None, BinaryOp::Div) => self.b.ins().sdiv(a, b),
            (None, _) => self.b.ins().srem(a, b),
        }))
    }

    /// True when `a / b` (or `a % b`) must trap: `b == 0`, or `i64::MIN / -1`.
    fn division_fails(&mut self, a: ir::Value, b: ir::Value) -> ir::Value {
        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        let min = self.b.ins().icmp_imm_s(IntCC::Equal, a, i64::MIN);
        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let overflow = self.b.ins().band(min, minus_one);
        self.b.ins().bor(zero, overflow)
    }

    fn translate_float_arith(
        &mut self,
        op: BinaryOp,
        a: ir::Value,
        b: ir::Value,
        span: Span,
    ) -> R<JV> {
        let (r, code) = match op {
            BinaryOp::Add => (self.b.ins().fadd(a, b), int_op::ADD),
            BinaryOp::Sub => (self.b.ins().fsub(a, b), int_op::SUB),
            BinaryOp::Mul => (self.b.ins().fmul(a, b), int_op::MUL),
            BinaryOp::Div => (self.b.ins().fdiv(a, b), int_op::DIV),
            BinaryOp::Rem => {
                let ctx = self.ctx();
                let s = self.pool.span(span);
                let s = self.i32c(s);
                let r = self.call1("dm_rem_float", &[ctx, a, b, s])?;
                self.check_trapped();
                return Ok(JV::one(r));
            }
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` on floats",
                    op.symbol()
                )));
            }
        };
        // A result is finite exactly when its magnitude is below infinity (NaN compares
        // unordered, so it fails too); division by zero always lands here as well and
        // the helper then reports it as the interpreter does.
        let magnitude = self.b.ins().fabs(r);
        let inf = self.b.ins().f64const(f64::INFINITY);
        let not_finite = self
            .b
            .ins()
            .fcmp(FloatCC::UnorderedOrGreaterThanOrEqual, magnitude, inf);
        self.trap_float_if(not_finite, code, a, b, span)?;
        Ok(JV::one(r))
    }

    /// Timestamp and duration arithmetic, checked like the interpreter's.
    fn translate_time_arith(
        &mut self,
        op: BinaryOp,
        a: ir::Value,
        tx: &Type,
        b: ir::Value,
        ty: &Type,
        span: Span,
    ) -> R<JV> {
        use BinaryOp as B;
        use Type as T;
        let code = match (op, tx, ty) {
            (B::Add | B::Sub, T::Duration, T::Duration)
            | (B::Mul, T::Duration, T::Int)
            | (B::Mul, T::Int, T::Duration) => int_op::DURATION,
            (B::Add, T::Timestamp, T::Duration)
            | (B::Add, T::Duration, T::Timestamp)
            | (B::Sub, T::Timestamp, T::Duration)
            | (B::Sub, T::Timestamp, T::Timestamp) => int_op::TIMESTAMP,
            // Duration / int is a duration, duration / duration an int: the same
            // checked division on the microseconds either way.
            (B::Div, T::Duration, T::Int | T::Duration) => {
                let failed = self.division_fails(a, b);
                self.trap_if(failed, int_op::DIV, a, b, span)?;
                return Ok(JV::one(self.b.ins().sdiv(a, b)));
            }
            _ => {
                return Err(CodegenError::Unsupported(format!(
                    "`{}` on {tx} and {ty}",
                    op.symbol()
                )));
            }
        };
        let (r, of) = match op {
            B::Add => self.b.ins().sadd_overflow(a, b),
            B::Sub => self.b.ins().ssub_overflow(a, b),
            _ => self.b.ins().smul_overflow(a, b),
        };
        self.trap_if(of, code, a, b, span)?;
        Ok(JV::one(r))
    }

    fn translate_call(&mut self, f: Builtin, args: &[Expr], expr: &Expr) -> R<JV> {
        let int_pair = args.len() == 2
            && args.iter().all(|a| a.ty == Type::Int)
            && matches!(f, Builtin::Min | Builtin::Max);
        if int_pair {
            let x = self.translate_expr(&args[0])?;
            let y = self.translate_expr(&args[1])?;
            // `min` keeps the first operand when `a <= b`, `max` when `a > b`, as the
            // interpreter; equal ints are indistinguishable, so a select is exact.
            let cc = if f == Builtin::Min {
                IntCC::SignedLessThanOrEqual
            } else {
                IntCC::SignedGreaterThan
            };
            let pick = self.b.ins().icmp(cc, x.a, y.a);
            return Ok(JV::one(self.b.ins().select(pick, x.a, y.a)));
        }
        let mut pointers = Vec::with_capacity(args.len());
        for arg in args {
            let v = self.translate_expr(arg)?;
            pointers.push(self.boxed(v, &arg.ty)?);
        }
        let size = u32::try_from(pointers.len().max(1) * 8)
            .map_err(|_| CodegenError::Unsupported("a call with this many arguments".into()))?;
        // The argument pointers go through a stack array, so one helper serves every
        // arity.
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            3,
        ));
        for (i, p) in pointers.iter().enumerate() {
            let offset = i32::try_from(i * 8).unwrap_or(0);
            self.b.ins().stack_store(types::I64, *p, slot, offset);
        }
        let addr = self.b.ins().stack_addr(types::I64, slot, 0);
        let ctx = self.ctx();
        let index = self.i32c(i64::from(f.index()));
        let n = self.i32c(i64::try_from(pointers.len()).unwrap_or(0));
        let float = self.i8c(i64::from(expr.ty == Type::Float));
        let s = self.pool.span(expr.span);
        let s = self.i32c(s);
        let r = self.call1("dm_call", &[ctx, index, addr, n, float, s])?;
        self.check_trapped();
        self.unboxed(r, &expr.ty)
    }

    fn translate_index(&mut self, base: &Expr, index: &Expr, expr: &Expr) -> R<JV> {
        let b = self.translate_expr(base)?;
        let bp = self.boxed(b, &base.ty)?;
        let i = self.translate_expr(index)?;
        let ip = self.boxed(i, &index.ty)?;
        let ctx = self.ctx();
        let s = self.pool.span(expr.span);
        let s = self.i32c(s);
        let r = self.call1("dm_index", &[ctx, bp, ip, s])?;
        self.check_trapped();
        self.unboxed(r, &expr.ty)
    }

    fn translate_list(&mut self, items: &[Expr]) -> R<JV> {
        let mut pointers = Vec::with_capacity(items.len());
        for item in items {
            let v = self.translate_expr(item)?;
            pointers.push(self.boxed(v, &item.ty)?);
        }
        let ctx = self.ctx();
        let list = self.call1("dm_list_new", &[ctx])?;
        for p in pointers {
            self.call("dm_list_push", &[list, p])?;
        }
        Ok(JV::one(list))
    }

    // ---- statements ------------------------------------------------------------------

    fn translate_block(&mut self, stmts: &[Stmt]) -> R<Flow> {
        for stmt in stmts {
            if self.translate_stmt(stmt)? == Flow::Closed {
                return Ok(Flow::Closed);
            }
        }
        Ok(Flow::Open)
    }

    fn translate_stmt(&mut self, stmt: &Stmt) -> R<Flow> {
        match stmt {
            Stmt::Let { slot, value } => self.translate_let(*slot, value)?,
            Stmt::Assign {
                target: Place::State(field),
                op,
                value,
                stored,
                span,
            } => self.translate_assign_state(*field, (*op, stored), value, *span)?,
            Stmt::Assign {
                target: Place::MapEntry(field, key),
                op,
                value,
                stored,
                span,
            } => self.translate_assign_entry(*field, key, (*op, stored), value, *span)?,
            Stmt::If {
                cond,
                then,
                otherwise,
            } => return self.translate_if_stmt(cond, then, otherwise),
            Stmt::Delete => {
                self.ret(abi::STATUS_DELETE);
                return Ok(Flow::Closed);
            }
            Stmt::Emit { event, fields, .. } => self.translate_emit(*event, fields)?,
            Stmt::Mutate {
                field,
                op,
                args,
                span,
            } => self.translate_mutate(*field, *op, args, *span)?,
        }
        Ok(Flow::Open)
    }

    fn translate_let(&mut self, slot: usize, value: &Expr) -> R<()> {
        let v = self.translate_expr(value)?;
        let vars = self
            .locals
            .get(slot)
            .cloned()
            .ok_or_else(|| CodegenError::Backend(format!("no local slot {slot}")))?;
        let lty = self.local_types.get(slot).cloned().unwrap_or(Type::None);
        let v = self.coerce(v, &value.ty, &lty)?;
        let v = if Repr::of(&lty)? == Repr::Ref {
            // A local must keep its value even if the document field it came from is
            // assigned later, so handles are copied into the arena.
            let ctx = self.ctx();
            JV::one(self.call1("dm_clone", &[ctx, v.a])?)
        } else {
            v
        };
        for (var, part) in vars.iter().zip(v.parts()) {
            self.b.def_var(*var, part);
        }
        Ok(())
    }

    /// `field = value` or `field op= value`, whose result is of type `stored`.
    fn translate_assign_state(
        &mut self,
        field: usize,
        (op, stored): (Option<BinaryOp>, &Type),
        value: &Expr,
        span: Span,
    ) -> R<()> {
        let v = self.translate_expr(value)?;
        let (slot, fty) = self.state_slot(field)?;
        let new = match op {
            None => self.coerce(v, &value.ty, &fty)?,
            Some(op) => {
                let doc = self.params[0];
                let old = self.load_slot(doc, slot)?;
                let r = self.translate_binary(op, old, &fty, v, &value.ty, span)?;
                self.coerce(r, stored, &fty)?
            }
        };
        self.store_slot(new, slot)
    }

    /// `map[key] = value` or `map[key] op= value`, whose result is of type `stored`.
    fn translate_assign_entry(
        &mut self,
        field: usize,
        key: &Expr,
        (op, stored): (Option<BinaryOp>, &Type),
        value: &Expr,
        span: Span,
    ) -> R<()> {
        let v = self.translate_expr(value)?;
        let k = self.translate_expr(key)?;
        let kp = self.boxed(k, &key.ty)?;
        let (slot, fty) = self.state_slot(field)?;
        let Type::Map(_, vty) = &fty else {
            return Err(CodegenError::Backend(
                "entry assignment on a non-map".into(),
            ));
        };
        let vty = (**vty).clone();
        let doc = self.params[0];
        let map = self.load_slot(doc, slot)?.a;
        let new = match op {
            None => {
                let c = self.coerce(v, &value.ty, &vty)?;
                self.boxed(c, &vty)?
            }
            Some(op) => {
                let zero = self.pool.value(vty.zero_value());
                let zero = self.i64c(zero);
                let ctx = self.ctx();
                let oldp = self.call1("dm_map_get_or", &[ctx, map, kp, zero])?;
                let old = self.unboxed(oldp, &vty)?;
                let r = self.translate_binary(op, old, &vty, v, &value.ty, span)?;
                self.boxed(r, stored)?
            }
        };
        let ctx = self.ctx();
        let s = self.pool.span(span);
        let s = self.i32c(s);
        self.call("dm_map_set", &[ctx, map, kp, new, s])?;
        self.check_trapped();
        Ok(())
    }

    fn translate_if_stmt(&mut self, cond: &Expr, then: &[Stmt], otherwise: &[Stmt]) -> R<Flow> {
        let c = self.translate_expr(cond)?;
        let then_block = self.b.create_block();
        let else_block = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(c.a, then_block, &[], else_block, &[]);
        self.b.switch_to_block(then_block);
        let then_flow = self.translate_block(then)?;
        if then_flow == Flow::Open {
            self.b.ins().jump(done, &[]);
        }
        self.b.switch_to_block(else_block);
        let else_flow = self.translate_block(otherwise)?;
        if else_flow == Flow::Open {
            self.b.ins().jump(done, &[]);
        }
        self.b.switch_to_block(done);
        if then_flow == Flow::Closed && else_flow == Flow::Closed {
            // No branch reaches the join block; it still needs a terminator.
            self.b.ins().jump(self.trap_block, &[]);
            return Ok(Flow::Closed);
        }
        Ok(Flow::Open)
    }

    fn translate_emit(&mut self, event: usize, fields: &[Expr]) -> R<()> {
        let ctx = self.ctx();
        self.call("dm_emit_begin", &[ctx])?;
        for field in fields {
            let v = self.translate_expr(field)?;
            let p = self.boxed(v, &field.ty)?;
            let ctx = self.ctx();
            self.call("dm_emit_push", &[ctx, p])?;
        }
        let ctx = self.ctx();
        let e = self.i32c(i64::try_from(event).unwrap_or(0));
        self.call("dm_emit_end", &[ctx, e])?;
        Ok(())
    }

    fn translate_mutate(&mut self, field: usize, op: Mutation, args: &[Expr], span: Span) -> R<()> {
        let arg = match args.first() {
            Some(a) => {
                let v = self.translate_expr(a)?;
                self.boxed(v, &a.ty)?
            }
            None => self.i64c(0),
        };
        let (slot, _) = self.state_slot(field)?;
        let doc = self.params[0];
        let target = self.load_slot(doc, slot)?.a;
        let code = match op {
            Mutation::Insert => abi::mutation::INSERT,
            Mutation::Push => abi::mutation::PUSH,
            Mutation::Remove => abi::mutation::REMOVE,
            Mutation::Clear => abi::mutation::CLEAR,
        };
        let code = self.i32c(i64::from(code));
        let ctx = self.ctx();
        let s = self.pool.span(span);
        let s = self.i32c(s);
        self.call("dm_mutate", &[ctx, code, target, arg, s])?;
        // Only a growing mutation can trap (a full collection).
        if matches!(op, Mutation::Push | Mutation::Insert) {
            self.check_trapped();
        }
        Ok(())
    }
}

/// The Cranelift text of a function, for `dmc explain --clif`.
pub fn display(func: &ir::Function) -> String {
    func.display().to_string()
}
