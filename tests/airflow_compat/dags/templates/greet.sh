echo "hello $WHO from {{ params.region }}"
