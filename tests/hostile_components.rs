//! Hostile rule set components that no Rust guest can be: their
//! `get-manifest` grows a table by 50 million elements (`tablehog`), or
//! grows and fills three more linear memories of 62.5 MiB each beside the
//! one every component has (`memories`). Written as core modules with
//! `wasm-encoder` and made components of the `rule-set` world with
//! `wit-component`, as the guest toolchain does.

use std::path::Path;
use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection,
    MemoryType, Module, RefType, TableSection, TableType, TypeSection, ValType,
};

/// Elements `tablehog` asks for in one `table.grow`.
const TABLE_GROWTH: i32 = 50_000_000;

/// Pages (64 KiB) `memories` grows each extra memory by.
const MEMORY_PAGES: i32 = 1_000;

/// The core module: one memory (exported, as the canonical ABI needs),
/// `extra_memories` more, a funcref table, `cabi_realloc`, and the
/// world's four exports, whose bodies trap except `get-manifest`'s
/// `hostile` instructions before it.
fn core_module(extra_memories: u32, hostile: &[Instruction<'_>]) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // 0: get-manifest
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]); // 1: init
    types.ty().function([ValType::I32], [ValType::I32]); // 2: on-events, on-windows
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 3: cabi_realloc
    let mut functions = FunctionSection::new();
    for ty in [0, 1, 2, 2, 3] {
        functions.function(ty);
    }
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: 1,
        maximum: None,
        table64: false,
        shared: false,
    });
    let mut memories = MemorySection::new();
    for _ in 0..=extra_memories {
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut exports = ExportSection::new();
    let interface = "edge:rules/rule@0.4.0";
    for (i, name) in ["get-manifest", "init", "on-events", "on-windows"]
        .iter()
        .enumerate()
    {
        exports.export(&format!("{interface}#{name}"), ExportKind::Func, i as u32);
    }
    exports.export("cabi_realloc", ExportKind::Func, 4);
    exports.export("memory", ExportKind::Memory, 0);
    let mut code = CodeSection::new();
    let mut manifest = Function::new([]);
    for instruction in hostile {
        manifest.instruction(instruction);
    }
    manifest.instruction(&Instruction::Unreachable);
    manifest.instruction(&Instruction::End);
    code.function(&manifest);
    for _ in 0..3 {
        let mut trap = Function::new([]);
        trap.instruction(&Instruction::Unreachable);
        trap.instruction(&Instruction::End);
        code.function(&trap);
    }
    // cabi_realloc: a bump allocator is not needed; nothing is passed in
    // before `get-manifest` traps.
    let mut realloc = Function::new([]);
    realloc.instruction(&Instruction::I32Const(8));
    realloc.instruction(&Instruction::End);
    code.function(&realloc);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memories)
        .section(&exports)
        .section(&code);
    module.finish()
}

fn component(root: &Path, core: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(root.join("wit"))?;
    let world = resolve.select_world(&[package], Some("rule-set"))?;
    let mut core = core;
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&core)?
        .encode()
}

/// Writes `tablehog.wasm` and `memories.wasm` into `dir`; their paths.
pub fn build(root: &Path, dir: &Path) -> anyhow::Result<[(String, std::path::PathBuf); 2]> {
    std::fs::create_dir_all(dir)?;
    let grow_table = [
        Instruction::RefNull(wasm_encoder::HeapType::FUNC),
        Instruction::I32Const(TABLE_GROWTH),
        Instruction::TableGrow(0),
        Instruction::Drop,
    ];
    let mut grow_memories = Vec::new();
    for memory in 1..=3u32 {
        grow_memories.extend([
            Instruction::I32Const(MEMORY_PAGES),
            Instruction::MemoryGrow(memory),
            Instruction::Drop,
            // Written, so that the pages are really held.
            Instruction::I32Const(0),
            Instruction::I32Const(1),
            Instruction::I32Const(MEMORY_PAGES * 65_536),
            Instruction::MemoryFill(memory),
        ]);
    }
    let tablehog = dir.join("tablehog.wasm");
    std::fs::write(&tablehog, component(root, core_module(0, &grow_table))?)?;
    let memories = dir.join("memories.wasm");
    std::fs::write(&memories, component(root, core_module(3, &grow_memories))?)?;
    Ok([("TABLEHOG".into(), tablehog), ("MEMORIES".into(), memories)])
}
