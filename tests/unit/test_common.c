/* test_common.c — the intrusive list, the byte buffer, shared WebSocket frames (header
 * encoding for every length class); JWT verification is in test_jwt.c. */
#include "cardgw/common.h"
#include "cardgw/conn.h"
#include "testlib.h"

#include <stdlib.h>

typedef struct {
    int v;
    gw_list_t link;
} item_t;

TEST(list_insert_remove_iterate)
{
    gw_list_t head, *it, *tmp;
    item_t items[4];
    gw_list_init(&head);
    CHECK(gw_list_empty(&head));
    for (int i = 0; i < 4; i++) {
        items[i].v = i;
        gw_list_insert_tail(&head, &items[i].link);
    }
    int sum = 0, n = 0;
    gw_list_foreach_safe(it, tmp, &head)
    {
        item_t *x = gw_container_of(it, item_t, link);
        CHECK_EQ_INT(x->v, n);
        sum += x->v;
        n++;
        if (x->v % 2)
            gw_list_remove(it);
    }
    CHECK_EQ_INT(sum, 6);
    n = 0;
    gw_list_foreach(it, &head) n++;
    CHECK_EQ_INT(n, 2);
    CHECK(!gw_list_linked(&items[1].link));
    CHECK(gw_list_linked(&items[0].link));
}

TEST(buf_grows_and_keeps_headroom)
{
    gw_buf_t b;
    gw_buf_init(&b, 30);
    for (int i = 0; i < 1000; i++)
        gw_buf_appendf(&b, "%d,", i);
    CHECK(b.len > 2000);
    CHECK(memcmp(gw_buf_data(&b), "0,1,2,", 6) == 0);
    CHECK(gw_buf_data(&b) - b.base == 30);
    gw_buf_free(&b);
}

static void check_frame(size_t n, int binary, const uint8_t *hdr, size_t hn)
{
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    uint8_t *p = gw_buf_reserve(&b, n ? n : 1);
    memset(p, 'x', n);
    b.len = n;
    gw_frame_t *f = gw_frame_from_buf(&b, binary);
    CHECK(b.base == NULL); /* ownership moved */
    CHECK_EQ_INT(f->len, n + hn);
    CHECK_EQ_MEM(f->data, hn, hdr, hn);
    CHECK(n == 0 || f->data[hn] == 'x');
    gw_frame_ref(f);
    gw_frame_unref(f);
    gw_frame_unref(f);
}

TEST(frame_headers)
{
    check_frame(0, 1, (const uint8_t *)"\x82\x00", 2);
    check_frame(125, 0, (const uint8_t *)"\x81\x7d", 2);
    check_frame(126, 1, (const uint8_t *)"\x82\x7e\x00\x7e", 4);
    check_frame(65535, 1, (const uint8_t *)"\x82\x7e\xff\xff", 4);
    check_frame(65536, 0, (const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

int main(void)
{
    RUN(list_insert_remove_iterate);
    RUN(buf_grows_and_keeps_headroom);
    RUN(frame_headers);
    return TL_DONE();
}
