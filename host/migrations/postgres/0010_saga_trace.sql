-- The W3C traceparent of the span that started a saga: its steps' spans are its children.
ALTER TABLE sagas ADD COLUMN trace_parent TEXT;
