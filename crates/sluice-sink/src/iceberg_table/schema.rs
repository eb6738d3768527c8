//! Arrow schemas and Iceberg schemas, and the field ids that tie a data
//! file's columns to the table's.
//!
//! The iceberg crate converts between the two for its own Arrow version,
//! one behind Sluice's, so the types are mapped here: the sink hands the
//! crate only Iceberg types. Data files are written with Sluice's Parquet
//! writer, each column carrying its table field id (`PARQUET:field_id`), so
//! readers match columns by id, never by name or position.
//!
//! A file's ids are planned before it is written, from the table as loaded
//! then: a column the table has keeps its id; a new column gets the id the
//! crate will give it when the commit adds it (after the table's last
//! column id, depth first, as the crate's `update_schema` assigns them); a
//! new table's columns get the ids its creation assigns (from 1, each
//! struct's fields before their children). The commit checks the plan
//! against the table it committed to.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, StructType, Type,
};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use crate::error::{Error, Result};

/// The schema an Iceberg table stores for data of `schema`: Delta's
/// storable types ([`crate::storable::delta_schema`]: microsecond
/// timestamps, no unsigned integers, ...) with bytes and shorts widened to
/// int, which Iceberg has not.
pub fn storable(schema: &Schema) -> Result<Schema> {
    let delta = crate::storable::delta_schema(schema)?;
    let fields: Vec<FieldRef> = delta.fields().iter().map(widen).collect();
    Ok(Schema::new_with_metadata(fields, delta.metadata().clone()))
}

fn widen(f: &FieldRef) -> FieldRef {
    let ty = match f.data_type() {
        DataType::Int8 | DataType::Int16 => DataType::Int32,
        DataType::List(e) => DataType::List(widen(e)),
        DataType::LargeList(e) => DataType::LargeList(widen(e)),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(widen).collect()),
        DataType::Map(e, sorted) => DataType::Map(widen(e), *sorted),
        other => other.clone(),
    };
    Arc::new(f.as_ref().clone().with_data_type(ty))
}

/// The Iceberg type of a storable Arrow type.
fn iceberg_type(t: &DataType, path: &str, next: &mut Ids) -> Result<Type> {
    let p = |t| Ok(Type::Primitive(t));
    match t {
        DataType::Boolean => p(PrimitiveType::Boolean),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => p(PrimitiveType::Int),
        DataType::Int64 => p(PrimitiveType::Long),
        DataType::Float32 => p(PrimitiveType::Float),
        DataType::Float64 => p(PrimitiveType::Double),
        DataType::Decimal128(precision, scale) if *scale >= 0 => p(PrimitiveType::Decimal {
            precision: u32::from(*precision),
            scale: *scale as u32,
        }),
        DataType::Date32 => p(PrimitiveType::Date),
        DataType::Timestamp(TimeUnit::Microsecond, None) => p(PrimitiveType::Timestamp),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => p(PrimitiveType::Timestamptz),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => p(PrimitiveType::String),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => p(PrimitiveType::Binary),
        DataType::List(e) | DataType::LargeList(e) => {
            let id = next.take();
            let element = iceberg_type(e.data_type(), &format!("{path}.element"), next)?;
            Ok(Type::List(ListType::new(Arc::new(
                NestedField::list_element(id, element, !e.is_nullable()),
            ))))
        }
        DataType::Struct(fields) => Ok(Type::Struct(StructType::new(struct_fields(
            fields, path, next,
        )?))),
        DataType::Map(entry, _) => {
            let DataType::Struct(kv) = entry.data_type() else {
                return Err(unsupported(path, t));
            };
            let (key_id, value_id) = (next.take(), next.take());
            let key = iceberg_type(kv[0].data_type(), &format!("{path}.key"), next)?;
            let value = iceberg_type(kv[1].data_type(), &format!("{path}.value"), next)?;
            Ok(Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(key_id, key)),
                Arc::new(NestedField::map_value_element(
                    value_id,
                    value,
                    !kv[1].is_nullable(),
                )),
            )))
        }
        other => Err(unsupported(path, other)),
    }
}

fn unsupported(path: &str, t: &DataType) -> Error {
    Error::Unstorable(vec![format!(
        "column '{}' is {t}, which Iceberg cannot store; cast it to a supported type",
        path.escape_debug()
    )])
}

/// Field ids handed out in order: a new table's breadth first at each
/// level (each struct's fields before their children, as creation assigns
/// them), a column added to a table depth first (as `update_schema` does).
struct Ids {
    last: i32,
    depth_first: bool,
}

impl Ids {
    fn take(&mut self) -> i32 {
        self.last += 1;
        self.last
    }
}

/// A struct's fields with their ids, in the order `next` hands them out.
fn struct_fields(fields: &Fields, parent: &str, next: &mut Ids) -> Result<Vec<NestedFieldRef>> {
    let mut ids: Vec<i32> = Vec::new();
    if !next.depth_first {
        ids = fields.iter().map(|_| next.take()).collect();
    }
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let id = if next.depth_first {
                next.take()
            } else {
                ids[i]
            };
            let path = join(parent, f.name());
            let ty = iceberg_type(f.data_type(), &path, next)?;
            Ok(Arc::new(NestedField::new(
                id,
                f.name(),
                ty,
                !f.is_nullable(),
            )))
        })
        .collect()
}

/// One new column with its ids assigned depth first after the table's
/// last one.
fn new_column(f: &Field, next: &mut Ids) -> Result<NestedFieldRef> {
    let id = next.take();
    let ty = iceberg_type(f.data_type(), f.name(), next)?;
    // Iceberg adds columns as optional: a table's old rows have no value.
    Ok(Arc::new(NestedField::optional(id, f.name(), ty)))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// The columns of a batch as the table will know them after the commit.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The table's schema as it will be (its columns, then the new ones).
    pub schema: iceberg::spec::Schema,
    /// The data's columns that the table lacks, in the order they are added.
    pub added: Vec<NestedFieldRef>,
    /// The data's Arrow schema with every field's id in its metadata, for
    /// the writer.
    pub arrow: Arc<Schema>,
}

/// Plans the ids of data of `data` (a storable schema) for the table whose
/// current schema and last column id are `table`, or for a new table.
/// New columns are refused unless `add_columns`.
pub fn plan(
    data: &Schema,
    table: Option<(&iceberg::spec::Schema, i32)>,
    add_columns: bool,
    name: &str,
) -> Result<Planned> {
    let schema_error = |e: iceberg::Error| Error::InvalidInput(format!("table {name}: {e}"));
    let Some((current, last_column_id)) = table else {
        let mut next = Ids {
            last: 0,
            depth_first: false,
        };
        let fields = struct_fields(data.fields(), "", &mut next)?;
        let schema = iceberg::spec::Schema::builder()
            .with_fields(fields)
            .build()
            .map_err(schema_error)?;
        let arrow = with_ids(data, &schema)?;
        return Ok(Planned {
            added: Vec::new(),
            schema,
            arrow,
        });
    };
    let mut next = Ids {
        last: last_column_id,
        depth_first: true,
    };
    let mut added = Vec::new();
    let mut problems = Vec::new();
    for f in data.fields() {
        match current.field_by_name(f.name()) {
            Some(have) => {
                let mut scratch = Ids {
                    last: 0,
                    depth_first: false,
                };
                let want = iceberg_type(f.data_type(), f.name(), &mut scratch)?;
                if !same_shape(&want, &have.field_type) && !widens(&want, &have.field_type) {
                    problems.push(format!(
                        "column '{}' is {} in the data but {} in the table",
                        f.name(),
                        want,
                        have.field_type
                    ));
                }
            }
            None if add_columns => added.push(new_column(f, &mut next)?),
            None => problems.push(format!(
                "column '{}' is not in the table (allow new columns with schema evolution)",
                f.name()
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Error::SchemaMismatch {
            table: name.to_string(),
            reason: problems.join("; "),
        });
    }
    let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
    fields.extend(added.iter().cloned());
    let schema = iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + i32::from(!added.is_empty()))
        .with_fields(fields)
        .build()
        .map_err(schema_error)?;
    let arrow = with_ids(data, &schema)?;
    Ok(Planned {
        schema,
        added,
        arrow,
    })
}

/// Whether two types are the same, ignoring field ids.
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::List(x), Type::List(y)) => {
            same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        (Type::Map(x), Type::Map(y)) => {
            same_shape(&x.key_field.field_type, &y.key_field.field_type)
                && same_shape(&x.value_field.field_type, &y.value_field.field_type)
        }
        (Type::Struct(x), Type::Struct(y)) => x.fields().iter().all(|f| {
            y.fields()
                .iter()
                .any(|g| g.name == f.name && same_shape(&f.field_type, &g.field_type))
        }),
        _ => false,
    }
}

/// Whether data of type `data` is written into a column of type `table`
/// by widening it (int into long, float into double).
fn widens(data: &Type, table: &Type) -> bool {
    matches!(
        (data, table),
        (
            Type::Primitive(PrimitiveType::Int),
            Type::Primitive(PrimitiveType::Long)
        ) | (
            Type::Primitive(PrimitiveType::Float),
            Type::Primitive(PrimitiveType::Double)
        )
    )
}

/// `data` with each field's id from `schema` (matched by name) and the
/// type its table column has where the data's is narrower.
pub fn with_ids(data: &Schema, schema: &iceberg::spec::Schema) -> Result<Arc<Schema>> {
    let fields = data
        .fields()
        .iter()
        .map(|f| {
            let column = schema.field_by_name(f.name()).ok_or_else(|| {
                Error::InvalidInput(format!("column '{}' has no field id", f.name()))
            })?;
            field_with_ids(f, column)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        data.metadata().clone(),
    )))
}

fn field_with_ids(f: &Field, column: &NestedField) -> Result<FieldRef> {
    let ty = match (f.data_type(), column.field_type.as_ref()) {
        (DataType::Int32, Type::Primitive(PrimitiveType::Long)) => DataType::Int64,
        (DataType::Float32, Type::Primitive(PrimitiveType::Double)) => DataType::Float64,
        (DataType::List(e), Type::List(l)) => DataType::List(field_with_ids(e, &l.element_field)?),
        (DataType::LargeList(e), Type::List(l)) => {
            DataType::LargeList(field_with_ids(e, &l.element_field)?)
        }
        (DataType::Struct(fs), Type::Struct(s)) => DataType::Struct(
            fs.iter()
                .map(|child| {
                    let nested = s
                        .fields()
                        .iter()
                        .find(|n| n.name == *child.name())
                        .ok_or_else(|| {
                            Error::InvalidInput(format!(
                                "field '{}' of '{}' has no field id",
                                child.name(),
                                f.name()
                            ))
                        })?;
                    field_with_ids(child, nested)
                })
                .collect::<Result<Fields>>()?,
        ),
        (DataType::Map(entry, sorted), Type::Map(m)) => {
            let DataType::Struct(kv) = entry.data_type() else {
                return Err(unsupported(f.name(), f.data_type()));
            };
            let kv = Fields::from(vec![
                field_with_ids(&kv[0], &m.key_field)?,
                field_with_ids(&kv[1], &m.value_field)?,
            ]);
            DataType::Map(
                Arc::new(entry.as_ref().clone().with_data_type(DataType::Struct(kv))),
                *sorted,
            )
        }
        (t, _) => t.clone(),
    };
    let mut metadata: HashMap<String, String> = f.metadata().clone();
    metadata.insert(PARQUET_FIELD_ID_META_KEY.to_string(), column.id.to_string());
    Ok(Arc::new(
        f.clone().with_data_type(ty).with_metadata(metadata),
    ))
}

/// The Arrow field of a table column (with its id), as Sluice reads it.
pub fn arrow_field(f: &NestedField) -> Result<Field> {
    let ty = arrow_type(&f.field_type)?;
    let metadata = HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), f.id.to_string())]);
    Ok(Field::new(&f.name, ty, !f.required).with_metadata(metadata))
}

fn arrow_type(t: &Type) -> Result<DataType> {
    Ok(match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => DataType::Boolean,
            PrimitiveType::Int => DataType::Int32,
            PrimitiveType::Long => DataType::Int64,
            PrimitiveType::Float => DataType::Float32,
            PrimitiveType::Double => DataType::Float64,
            PrimitiveType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision as u8, *scale as i8)
            }
            PrimitiveType::Date => DataType::Date32,
            PrimitiveType::Time => DataType::Time64(TimeUnit::Microsecond),
            PrimitiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PrimitiveType::Timestamptz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PrimitiveType::TimestampNs => DataType::Timestamp(TimeUnit::Nanosecond, None),
            PrimitiveType::TimestamptzNs => {
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            }
            PrimitiveType::String => DataType::Utf8,
            PrimitiveType::Uuid => DataType::FixedSizeBinary(16),
            PrimitiveType::Fixed(n) => DataType::FixedSizeBinary(*n as i32),
            PrimitiveType::Binary => DataType::Binary,
        },
        Type::List(l) => DataType::List(Arc::new(arrow_field(&l.element_field)?)),
        Type::Struct(s) => DataType::Struct(
            s.fields()
                .iter()
                .map(|f| arrow_field(f).map(Arc::new))
                .collect::<Result<Fields>>()?,
        ),
        Type::Map(m) => {
            let entries = Fields::from(vec![
                arrow_field(&m.key_field)?.with_name("key"),
                arrow_field(&m.value_field)?.with_name("value"),
            ]);
            DataType::Map(
                Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
                false,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(schema: &Schema) -> Vec<(String, String)> {
        fn walk(f: &Field, out: &mut Vec<(String, String)>) {
            out.push((
                f.name().clone(),
                f.metadata()[PARQUET_FIELD_ID_META_KEY].clone(),
            ));
            match f.data_type() {
                DataType::List(e) => walk(e, out),
                DataType::Struct(fs) => fs.iter().for_each(|c| walk(c, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        schema.fields().iter().for_each(|f| walk(f, &mut out));
        out
    }

    fn data() -> Schema {
        let point = Fields::from(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Float64, true),
        ]);
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("point", DataType::Struct(point), true),
            Field::new_list("tags", Field::new("item", DataType::Utf8, true), true),
        ])
    }

    #[test]
    fn a_new_tables_ids_go_to_each_structs_fields_before_their_children() {
        // As the crate's table creation reassigns them (the sink's tests
        // create such a table and commit files planned so).
        let planned = plan(&data(), None, false, "t").unwrap();
        let got = ids(&planned.arrow);
        let want = [
            ("id", "1"),
            ("point", "2"),
            ("x", "4"),
            ("y", "5"),
            ("tags", "3"),
            ("item", "6"),
        ];
        assert_eq!(
            got,
            want.map(|(n, i)| (n.to_string(), i.to_string())).to_vec()
        );
    }

    #[test]
    fn new_columns_take_ids_after_the_last_and_old_ones_keep_theirs() {
        let first = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let table = plan(&first, None, false, "t").unwrap().schema;
        let planned = plan(&data(), Some((&table, 1)), true, "t").unwrap();
        let got = ids(&planned.arrow);
        assert_eq!(got[0], ("id".into(), "1".into()));
        assert_eq!(got[1], ("point".into(), "2".into()));
        assert_eq!(planned.added.len(), 2);
        let err = plan(&data(), Some((&table, 1)), false, "t").unwrap_err();
        assert!(
            err.to_string().contains("'point' is not in the table"),
            "{err}"
        );
    }

    #[test]
    fn a_type_the_table_cannot_take_is_named() {
        let table = plan(&data(), None, false, "t").unwrap().schema;
        let other = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        let err = plan(&other, Some((&table, 6)), true, "t").unwrap_err();
        assert!(err.to_string().contains("'id' is string"), "{err}");
    }
}
