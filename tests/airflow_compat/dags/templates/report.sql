SELECT * FROM sales WHERE day = '{{ macros.ds_add("2024-01-01", 1) }}' AND region = '{{ params.region }}'
